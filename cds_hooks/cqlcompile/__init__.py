"""Compiled CQL: ELM translated to Python at load, run in process; cql-execution stays the judge.

Public API: CompiledLibrary.load(elm, valuesets, includes).evaluate(resources, parameters, patient_id) and
CompiledEngine (the engine bridge's interface). Unsupported ELM raises UnsupportedElm at load.
"""
from .library import CompiledLibrary, CqlError, ParameterError  # noqa: F401
from .compiler import UnsupportedElm  # noqa: F401
from .adapter import CompiledEngine, engine_for  # noqa: F401
