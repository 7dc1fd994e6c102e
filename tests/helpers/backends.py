"""Make an optional decoder look uninstalled, even on a machine where it is installed."""

from __future__ import annotations

import sys

from tubevit.data.decode import _BACKEND_MODULES


def hide_backend(monkeypatch, backend: str) -> None:
    # A None entry in sys.modules fails the import. Both the package and the submodule the backend
    # imports: once loaded, `torchcodec.decoders` is returned from sys.modules without its parent
    # being looked at again, so hiding `torchcodec` alone hides nothing.
    for name in {backend, _BACKEND_MODULES[backend]}:
        monkeypatch.setitem(sys.modules, name, None)
