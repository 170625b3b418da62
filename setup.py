"""The compiled parts of tailscribe, in Cython: `app.addresses`, `app.jsonscan`, `app.timestamps` and
`app.schemas.traffic` (their docstrings say why).

Everything else about the package is in pyproject.toml; setuptools reads both. Building needs a C
compiler and the Python headers, which `make run`, `make test` and the Dockerfile's builder have.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            # -O3, as CPython itself is built: it vectorizes `count_openers` (0.2 ns a byte, 1.0 at -O2).
            Extension(f"app.{name}", [f"app/{name.replace('.', '/')}.pyx"], extra_compile_args=["-O3"])
            for name in ("addresses", "jsonscan", "timestamps", "schemas.traffic")
        ],
        compiler_directives={"language_level": "3"},
    )
)
