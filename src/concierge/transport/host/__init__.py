"""Host channels: virtio-serial, isa-serial, unix-listen, unix-connect, vsock-listen."""
