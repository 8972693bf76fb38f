"""The self-hosted MTurk server for a test's app, on loopback, and a boto3 client pointed at it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imnet.core.app import App


def serve(app: App) -> Any:
    """Start the server for `app`, then point the app's settings (endpoint) at it."""
    from mturk.server import start_in_thread

    handle = start_in_thread(app)
    app.settings = app.settings.replace(mturk_endpoint_url=handle.url)
    return handle


def client_for(app: App, **changes: Any) -> Any:
    """A boto3 MTurk client for the app's settings, with `changes` applied."""
    from mturk.client import make_client

    return make_client(app.settings.replace(**changes) if changes else app.settings)
