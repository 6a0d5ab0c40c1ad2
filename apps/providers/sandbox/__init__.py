"""Local, stateful stand-ins for the billing providers, for the demo and the tests."""
