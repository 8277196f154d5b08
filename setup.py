"""Extension list: the Cython kernels and the Rust (PyO3) module. Nothing else lives here."""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools_rust import Binding, RustExtension

# SLA_PLANNER_CYTHON_DEBUG=1 turns bounds checks and wraparound back on for debugging.
_DEBUG = os.environ.get("SLA_PLANNER_CYTHON_DEBUG") == "1"

COMPILER_DIRECTIVES = {
    "language_level": "3",
    "boundscheck": _DEBUG,
    "wraparound": _DEBUG,
    "initializedcheck": _DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}

_CY_SRC = os.path.join("cython", "sla_planner", "_cy")

cython_extensions = [
    Extension(
        f"sla_planner._cy.{name}",
        [os.path.join(_CY_SRC, f"{name}.pyx")],
        depends=[os.path.join(_CY_SRC, "_scalars.pxi")],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for name in ("interp", "kalman")
]

setup(
    ext_modules=cythonize(cython_extensions, compiler_directives=COMPILER_DIRECTIVES),
    rust_extensions=[
        RustExtension(
            "sla_planner._native",
            path=os.path.join("rust", "py", "Cargo.toml"),
            binding=Binding.PyO3,
            debug=False,
            py_limited_api="auto",
        )
    ],
)
