"""ORM tables, one module per aggregate. Import everything here so Alembic sees the whole schema."""

from app.models.base import Base
from app.models.infra import IdempotencyRecord, OutboxMessage
from app.models.menu import MenuCategory, MenuItem
from app.models.orders import Order, OrderEvent, Rating, ServiceParticipant, ServiceRecord
from app.models.org import OrgUnit
from app.models.users import User
from app.models.volunteers import Team, TeamMember, Volunteer, team_categories

__all__ = [
    "Base",
    "IdempotencyRecord",
    "MenuCategory",
    "MenuItem",
    "Order",
    "OrderEvent",
    "OrgUnit",
    "OutboxMessage",
    "Rating",
    "ServiceParticipant",
    "ServiceRecord",
    "Team",
    "TeamMember",
    "User",
    "Volunteer",
    "team_categories",
]
