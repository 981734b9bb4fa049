"""The transport actor (config id ``transport``): host channels and protocol front-ends."""
