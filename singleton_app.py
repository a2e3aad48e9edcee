"""The function.json app's one SingletonApp, which every function folder passes on.

Its orchestrators are the function folders beside this file whose function.json
declares an ``orchestrationTrigger`` (see ``durable_singleton.Catalog.from_folders``).
"""

from pathlib import Path

from durable_singleton import Catalog, SingletonApp

#: Made at import, with no I/O; its sessions and clients are made on first use.
app = SingletonApp(Catalog.from_folders(Path(__file__).resolve().parent))
