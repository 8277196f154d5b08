"""The pure decision core: no I/O, no clock; time arrives as an argument."""
