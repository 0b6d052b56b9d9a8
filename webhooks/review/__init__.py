"""The review commands: find, read, export, take over and report on conversations."""
