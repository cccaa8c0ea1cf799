"""Provisioning: client images, client definitions, MAC collection, DHCP and network boot."""
