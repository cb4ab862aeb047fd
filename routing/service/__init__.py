"""The HTTP dispatch service: a thin FastAPI layer over the engine, with its bearer-token auth.

``create_app`` builds the application (:mod:`routing.service.app`); tokens and roles are in
:mod:`routing.service.auth`. The engine never imports this package.
"""

from routing.service.app import create_app

__all__ = ["create_app"]
