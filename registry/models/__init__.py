from .exchange import ExportLog, ImportRun
from .labs import LabValue
from .late_effects import CarPersistence, IecHsEpisode, Infection, IvigCourse, SecondCancer
from .outcomes import FollowUpContact, Relapse, ResponseAssessment, Transplant
from .patients import Death, Patient, Treatment
from .people import Site, User, WorklistChange
from .quality import DataQualityQuery, QueryKind
from .tokens import ApiToken
from .toxicity import CrsEpisode, IcansEpisode

__all__ = [
    "ApiToken",
    "CarPersistence",
    "CrsEpisode",
    "DataQualityQuery",
    "Death",
    "ExportLog",
    "FollowUpContact",
    "IcansEpisode",
    "IecHsEpisode",
    "ImportRun",
    "Infection",
    "IvigCourse",
    "LabValue",
    "Patient",
    "QueryKind",
    "Relapse",
    "ResponseAssessment",
    "SecondCancer",
    "Site",
    "Transplant",
    "Treatment",
    "User",
    "WorklistChange",
]
from .outbox import OutboxMessage as OutboxMessage
