"""ORM tables, one module per aggregate. Import everything here so Alembic sees the whole schema.

Foreign keys guard every table but what every transition appends: the order's timeline
(``OrderEvent``: its order and actor), the outbox (``OutboxMessage``) and the personal-data access log
(``PiiAccess``). Their rows are written by the statement that changes the order (or, for the first
event, the transaction that inserts it), with ids it read or wrote in the same statement or request;
users, orders, volunteers and units are never deleted (accounts are disabled). A foreign key there
bought nothing but a lookup and a ``FOR KEY SHARE`` row lock per reference on every transition (about
0.1 ms of the database's time each for the outbox's and the log's, 0.03 ms for the event's order,
measured with ``bench/``), and a lock on one busy dispatcher's user row shared by every transaction
in flight. An audit record also should not hold up, or vanish with, what it names.
"""

from app.models.activities import Activity, ActivitySignup, ActivitySlot, PresenceCodeUse
from app.models.base import Base
from app.models.certificates import HourCertificate
from app.models.infra import IdempotencyRecord, OutboxMessage, RateLimitCounter
from app.models.ledger import Goods, HoursEntry, PointsEntry, Redemption
from app.models.menu import MenuCategory, MenuItem
from app.models.notify import SmsDailyCount, SmsDelivery, WechatConsent
from app.models.orders import Order, OrderEvent, OrderRow, OrderView, Rating, ServiceParticipant, ServiceRecord
from app.models.org import OrgUnit
from app.models.policy import UnitPolicy
from app.models.privacy import PiiAccess
from app.models.qualifications import VolunteerQualification
from app.models.standing import StandingOccurrence, StandingOrder
from app.models.users import User
from app.models.volunteers import Team, TeamMember, Volunteer, team_categories, volunteer_categories

__all__ = [
    "Activity",
    "ActivitySignup",
    "ActivitySlot",
    "Base",
    "Goods",
    "HourCertificate",
    "HoursEntry",
    "IdempotencyRecord",
    "MenuCategory",
    "MenuItem",
    "Order",
    "OrderEvent",
    "OrderRow",
    "OrderView",
    "OrgUnit",
    "OutboxMessage",
    "PiiAccess",
    "PointsEntry",
    "PresenceCodeUse",
    "RateLimitCounter",
    "Rating",
    "Redemption",
    "ServiceParticipant",
    "ServiceRecord",
    "SmsDailyCount",
    "SmsDelivery",
    "StandingOccurrence",
    "StandingOrder",
    "Team",
    "TeamMember",
    "UnitPolicy",
    "User",
    "Volunteer",
    "VolunteerQualification",
    "WechatConsent",
    "team_categories",
    "volunteer_categories",
]
