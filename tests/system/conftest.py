"""The system tests' fixtures (`relay`, `relay_factory`, `docker_client`) live in tests/relay_harness.py,
loaded for every suite by tests/conftest.py."""
