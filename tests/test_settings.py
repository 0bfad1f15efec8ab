import pytest

from modelfn.settings import Settings


def test_defaults_and_environment() -> None:
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env({"MODELFN_MAX_BODY_BYTES": "1024", "MODELFN_LOAD_WAIT_S": "2.5"})
    assert (settings.max_body_bytes, settings.load_wait_s) == (1024, 2.5)
    assert Settings.from_env({"MODELFN_ORT_SPIN": "true"}).ort_spin is True
    assert Settings.from_env({"MODELFN_ORT_SPIN": "0"}).ort_spin is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODELFN_MAX_BODY_BYTES": "lots"}, "MODELFN_MAX_BODY_BYTES='lots': expected int"),
        ({"MODELFN_MAX_BODY_BYTES": "0"}, "must be positive"),
        ({"MODELFN_ORT_GRAPH_OPTIMIZATION": "max"}, "must be one of disable, basic, extended, all"),
        ({"MODELFN_ORT_SPIN": "maybe"}, "MODELFN_ORT_SPIN='maybe': expected bool"),
        ({"MODELFN_MALLOC_ARENA_MAX": "-1"}, "MODELFN_MALLOC_ARENA_MAX must not be negative"),
    ],
)
def test_bad_values_name_the_variable(env: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)
