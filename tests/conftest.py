"""Suite-wide setup: the fault-injection solver ``faulty`` (roundlab.testing.faulty) is registered for every test."""

import roundlab.testing.faulty  # noqa: F401
