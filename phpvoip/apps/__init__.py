"""Terminal applications: endpoints that live inside the switch.

Importing this package registers every built-in application type with `phpvoip.config`.
"""

from phpvoip.apps import robot  # noqa: F401  (registers its type)
