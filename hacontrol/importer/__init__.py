"""`hacontrol import keepalived`: keepalived.conf read as keepalived reads it, then translated."""
