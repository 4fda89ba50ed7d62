"""A small delivery network: depots, roads between them, routes and costs."""

from depot.network import NETWORK, Network
from depot.routes import Route, plan_route

__all__ = ["NETWORK", "Network", "Route", "plan_route"]
