"""What every app's test module shares: its trained smoke model exported once (each module defines `trained`,
a tuple whose first item is the fitted pipeline)."""

import pytest

from core.testing import export_checked


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """The module's trained model exported and checked (core.testing.Exported): the export contract
    (TestContract) and the module's own export tests share it."""
    return export_checked(trained[0], tmp_path_factory.mktemp("exports"))
