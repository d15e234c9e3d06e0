"""hpsweep's built-in trainables: thin adapters from a trial config to the shared loop."""
