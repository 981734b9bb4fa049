"""Host-side checks of tools/vm/run-e2e: each talks to the guest through the raw port sockets."""
