"""The inference service's endpoints, one `APIRouter` module per concern.

Each route reads what it needs from `app.state` through `serving.dependencies.ServiceDep`;
`serving.app.create_app` puts those there, mounts the routers and adds the API-key guards where
it includes them (the keys belong to the app's settings, not to a module).
"""
