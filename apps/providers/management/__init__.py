"""Management commands of the providers app."""
