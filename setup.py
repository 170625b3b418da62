"""The compiled part of tailscribe: `app.addresses`, Cython (its docstring says why).

Everything else about the package is in pyproject.toml; setuptools reads both. Building needs a C
compiler and the Python headers, which `make run`, `make test` and the Dockerfile's builder have.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("app.addresses", ["app/addresses.pyx"], extra_compile_args=["-O2"])],
        compiler_directives={"language_level": "3"},
    )
)
