"""hacontrol: a keepalived-style HA controller for Linux IPVS director pairs."""
