"""The logic behind HttpStartSingle, SingletonOrchestrator and SingletonActivity.

Everything here is importable and testable without the Functions host. The function
folders at the app root only adapt the host's bindings to these modules.
"""
