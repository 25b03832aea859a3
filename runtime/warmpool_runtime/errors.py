"""Typed runtime errors, each with a stable `code` and the HTTP status it maps to."""

from __future__ import annotations

from typing import Any


class RuntimeFault(Exception):
    """Base of every error the runtime reports to a caller; `code` is stable and documented."""

    code = "runtime_error"
    status = 500
    retry_after_seconds: float | None = None

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


# Module loading: these keep a tuple (and so /readyz) from becoming ready.
class ModuleError(RuntimeFault):
    code = "module_invalid"
    status = 422


class ModuleHashMismatch(ModuleError):
    code = "module_hash_mismatch"


class ModuleUnreachable(ModuleError):
    code = "module_unreachable"
    status = 502


class ModuleTooLarge(ModuleError):
    code = "module_too_large"
    status = 413


class MissingImport(ModuleError):
    code = "missing_import"


class InstantiateFailed(ModuleError):
    code = "instantiate_failed"


# Request routing and arguments.
class UnknownTenant(RuntimeFault):
    code = "unknown_tenant"
    status = 404


class UnknownModule(RuntimeFault):
    code = "unknown_module"
    status = 404


class UnknownExport(RuntimeFault):
    code = "unknown_export"
    status = 404


class BadArguments(RuntimeFault):
    code = "bad_arguments"
    status = 400


class PayloadTooLarge(RuntimeFault):
    code = "payload_too_large"
    status = 413


class Unauthorized(RuntimeFault):
    code = "unauthorized"
    status = 401


class NotReady(RuntimeFault):
    code = "not_ready"
    status = 503


# Load shedding: the call was never started; retry after `retry_after_seconds`.
class TenantLimit(RuntimeFault):
    code = "tenant_limit"
    status = 429


class Saturated(RuntimeFault):
    code = "saturated"
    status = 503


# Guest failures: the guest's fault, never the runtime's, so 4xx.
class GuestTrap(RuntimeFault):
    code = "guest_trap"
    status = 422


class DeadlineExceeded(GuestTrap):
    code = "deadline_exceeded"
    status = 408


class FuelExhausted(GuestTrap):
    code = "fuel_exhausted"
    status = 429


class MemoryLimitExceeded(GuestTrap):
    code = "memory_limit_exceeded"
    status = 413


class BadGuestOutput(GuestTrap):
    code = "bad_guest_output"
