"""VRRP (RFC 5798 / RFC 3768): wire codec, sans-IO state machine, ARP/NA frames, asyncio adapter."""
