"""Errors across a process boundary (engine process, HTTP workers): rebuilt by class name from errors.py."""

from __future__ import annotations

import inspect
import pickle

import pytest

from audiosubnet import errors


def _classes():
    return [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if c.__module__ == errors.__name__ and issubclass(c, (errors.AsnError, errors.ServiceError))]


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_every_error_of_the_module_crosses_as_itself(cls):
    e = cls.__new__(cls)
    if issubclass(cls, errors.ServiceError):
        errors.ServiceError.__init__(e, "busy now", 7.0)
    else:
        errors.AsnError.__init__(e, "it broke", "do this")
    wire = pickle.loads(pickle.dumps(errors.to_wire(e)))
    back = errors.from_wire(wire)
    assert type(back) is cls and str(back) == str(e)
    if issubclass(cls, errors.ServiceError):
        assert back.retry_after == 7.0
    else:
        assert back.hint == "do this" and back.exit_code == cls.exit_code


def test_a_subclass_defined_elsewhere_crosses_as_its_nearest_base_here():
    from audiosubnet.engines.isolated import EngineCrashed
    from audiosubnet.miner.nonces import NonceStoreBusy

    assert type(errors.from_wire(errors.to_wire(EngineCrashed("killed by SIGSEGV")))) is errors.EngineError
    assert type(errors.from_wire(errors.to_wire(NonceStoreBusy("busy")))) is errors.Unavailable


def test_other_exceptions_have_no_wire_form_and_unknown_names_become_engine_errors():
    assert errors.to_wire(RuntimeError("x")) is None
    back = errors.from_wire(("NoSuchError", "what", None, 0.0))
    assert type(back) is errors.EngineError and str(back) == "what"
