"""The workbench's settings: configs/workbench.yaml, and the folders it reads and writes.

It reads two other components' published state (the recon state folder of
configs/recon.yaml, the ledger state folder of configs/ledger.yaml) and owns one folder of
its own (`state_dir`). Tests and the demo give all three folders explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clearline import config


class WorkbenchConfigError(ValueError):
    """configs/workbench.yaml says something the workbench cannot use; the message says what."""


@dataclass(frozen=True)
class ResolutionCode:
    code: str
    label: str
    watch: bool  # takes a date by which the variance must clear (timing)


@dataclass(frozen=True)
class LoginLimit:
    """After `per_name` failed logins for one user name, or `per_client` failed logins or
    bad API tokens from one client address, within `window_s` seconds, further attempts
    are refused for `cooloff_s` seconds, a right password too."""

    per_name: int = 5
    per_client: int = 20
    window_s: float = 15 * 60
    cooloff_s: float = 15 * 60

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> LoginLimit:
        limit = cls(
            per_name=int(cfg["per_name"]),
            per_client=int(cfg["per_client"]),
            window_s=float(cfg["window_minutes"]) * 60,
            cooloff_s=float(cfg["cooloff_minutes"]) * 60,
        )
        if min(limit.per_name, limit.per_client) < 1 or min(limit.window_s, limit.cooloff_s) <= 0:
            raise WorkbenchConfigError("configs/workbench.yaml: login_limit's counts and minutes must be positive")
        return limit


@dataclass(frozen=True)
class WorkbenchSettings:
    state_dir: Path
    recon_state: Path
    ledger_state: Path
    host: str = "127.0.0.1"
    port: int = 8090
    session_minutes: int = 480
    page_size: int = 50
    max_page_size: int = 500
    codes: tuple[ResolutionCode, ...] = ()
    thresholds: dict[str, int] = field(default_factory=lambda: {"default": 100000})
    login_limit: LoginLimit = LoginLimit()

    @classmethod
    def from_config(
        cls,
        state_dir: Path | None = None,
        recon_state: Path | None = None,
        ledger_state: Path | None = None,
        cfg: dict[str, Any] | None = None,
    ) -> WorkbenchSettings:
        """From configs/workbench.yaml (or `cfg`); a folder given here wins over the config."""
        cfg = cfg if cfg is not None else config.load("workbench")
        try:
            codes = tuple(
                ResolutionCode(code, str(c["label"]), bool(c.get("watch", False)))
                for code, c in cfg["resolution_codes"].items()
            )
            thresholds = {k: int(v) for k, v in cfg["approval_threshold_minor"].items()}
            settings = cls(
                state_dir=Path(state_dir) if state_dir else config.state_path(cfg["state_dir"]),
                recon_state=Path(recon_state) if recon_state else _recon_state(),
                ledger_state=Path(ledger_state) if ledger_state else _ledger_state(),
                host=str(cfg["host"]),
                port=int(cfg["port"]),
                session_minutes=int(cfg["session_minutes"]),
                page_size=int(cfg["page_size"]),
                max_page_size=int(cfg["max_page_size"]),
                codes=codes,
                thresholds=thresholds,
                login_limit=LoginLimit.from_config(cfg["login_limit"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkbenchConfigError(f"configs/workbench.yaml: {exc}") from None
        if "default" not in thresholds:
            raise WorkbenchConfigError("configs/workbench.yaml: approval_threshold_minor needs a default")
        if not codes:
            raise WorkbenchConfigError("configs/workbench.yaml: resolution_codes is empty")
        if settings.session_minutes <= 0 or settings.page_size <= 0:
            raise WorkbenchConfigError("configs/workbench.yaml: session_minutes and page_size must be positive")
        return settings

    def code(self, code: str) -> ResolutionCode | None:
        return next((c for c in self.codes if c.code == code), None)

    def threshold(self, currency: str) -> int:
        return self.thresholds.get(currency, self.thresholds["default"])


def _recon_state() -> Path:
    from clearline.recon import IntakeSettings

    return IntakeSettings.from_config(config.load("recon")).state_dir


def _ledger_state() -> Path:
    from clearline.ledger import LedgerSettings

    return LedgerSettings.from_config(None).state_dir
