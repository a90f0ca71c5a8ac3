"""The catalogue's applications, one package each, registered as `catalogue.apps` entry points."""
