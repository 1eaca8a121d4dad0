"""Compiled CQL: ELM translated to Python at load, run in process; cql-execution stays the judge.

Public API: CompiledLibrary.load(elm, valuesets, includes).evaluate(resources, parameters, patient_id) and
CompiledEngine (the engine bridge's interface). Unsupported ELM raises UnsupportedElm at load.
"""

from cds_hooks.engine.compiled.library import CompiledLibrary, CqlError, ParameterError  # noqa: F401
from cds_hooks.engine.compiled.compiler import UnsupportedElm  # noqa: F401
from cds_hooks.engine.compiled.adapter import CompiledEngine, engine_for, engine_from_config  # noqa: F401
