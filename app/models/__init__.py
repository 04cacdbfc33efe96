"""ORM tables, one module per aggregate. Import everything here so Alembic sees the whole schema."""

from app.models.base import Base
from app.models.infra import IdempotencyRecord, OutboxMessage
from app.models.ledger import Goods, HoursEntry, PointsEntry, Redemption
from app.models.menu import MenuCategory, MenuItem
from app.models.orders import Order, OrderEvent, Rating, ServiceParticipant, ServiceRecord
from app.models.org import OrgUnit
from app.models.policy import UnitPolicy
from app.models.privacy import PiiAccess
from app.models.users import User
from app.models.volunteers import Team, TeamMember, Volunteer, team_categories, volunteer_categories

__all__ = [
    "Base",
    "Goods",
    "HoursEntry",
    "IdempotencyRecord",
    "MenuCategory",
    "MenuItem",
    "Order",
    "OrderEvent",
    "OrgUnit",
    "OutboxMessage",
    "PiiAccess",
    "PointsEntry",
    "Rating",
    "Redemption",
    "ServiceParticipant",
    "ServiceRecord",
    "Team",
    "TeamMember",
    "UnitPolicy",
    "User",
    "Volunteer",
    "team_categories",
    "volunteer_categories",
]
