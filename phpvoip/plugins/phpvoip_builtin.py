"""phpvoip's own module types, found exactly like those of outside packages."""

from phpvoip.moduletypes import ModuleType

registrar = ModuleType(
    "registrar", "phones register here with digest auth and call each other",
    "phpvoip.modules.registrar", "Registrar",
)
channel = ModuleType(
    "channel", "an outside line: registers upstream like a phone and carries calls",
    "phpvoip.modules.channel", "SipChannel",
)
trunk = ModuleType(
    "trunk", "an IP-authenticated peer (another PBX, a gateway)",
    "phpvoip.modules.trunk", "Trunk",
)
robot = ModuleType(
    "robot", "a terminal application that answers and places calls by itself",
    "phpvoip.apps.robot", "Robot",
)
echo = ModuleType(
    "echo", "a terminal application that plays callers back what they say",
    "phpvoip.apps.echo", "Echo",
)
queue = ModuleType(
    "queue", "an agent queue: callers wait with music, agents are offered calls by a strategy",
    "phpvoip.apps.queue", "Queue",
)
attendant = ModuleType(
    "attendant", "an auto attendant: menus from YAML, direct dialling, business hours",
    "phpvoip.apps.attendant", "Attendant",
)
