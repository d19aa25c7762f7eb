"""Numeric codes of the DICOM Upper Layer that travel in PDUs (PS3.8 9.3).

They are named here once so that the rest of the code never carries a bare number.
"""

from __future__ import annotations

from enum import IntEnum


class PDUType(IntEnum):
    """PS3.8 9.3.1: the first byte of every PDU."""

    ASSOCIATE_RQ = 0x01
    ASSOCIATE_AC = 0x02
    ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    RELEASE_RQ = 0x05
    RELEASE_RP = 0x06
    ABORT = 0x07


class RejectResult(IntEnum):
    """PS3.8 9.3.4 Table 9-21, A-ASSOCIATE-RJ "Result"."""

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(IntEnum):
    """PS3.8 9.3.4 Table 9-21, A-ASSOCIATE-RJ "Source"."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class RejectUserReason(IntEnum):
    """Reasons when the source is the service-user (source 1)."""

    NO_REASON = 1
    APPLICATION_CONTEXT_NOT_SUPPORTED = 2
    CALLING_AE_NOT_RECOGNIZED = 3
    CALLED_AE_NOT_RECOGNIZED = 7


class RejectACSEReason(IntEnum):
    """Reasons when the source is the service-provider, ACSE related (source 2)."""

    NO_REASON = 1
    PROTOCOL_VERSION_NOT_SUPPORTED = 2


class RejectPresentationReason(IntEnum):
    """Reasons when the source is the service-provider, presentation related (source 3)."""

    TEMPORARY_CONGESTION = 1
    LOCAL_LIMIT_EXCEEDED = 2


class AbortSource(IntEnum):
    """PS3.8 9.3.8 Table 9-26, A-ABORT "Source" (1 is reserved)."""

    SERVICE_USER = 0
    RESERVED = 1
    SERVICE_PROVIDER = 2


class AbortReason(IntEnum):
    """PS3.8 9.3.8 Table 9-26, A-ABORT "Reason/Diag." (only meaningful for source 2)."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    RESERVED = 3
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class ContextResult(IntEnum):
    """PS3.8 9.3.3.2 Table 9-18, Presentation Context (AC) "Result/Reason"."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


class UserIdentityType(IntEnum):
    """PS3.7 D.3.3.7.1 Table D.3-14, User Identity "User-Identity-Type"."""

    USERNAME = 1
    USERNAME_AND_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5


# PS3.7 Annex A.2.1: the only application context name defined by DICOM.
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
