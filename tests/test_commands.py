"""Command parsing: argparse that raises, so every command gets --help and exact errors."""

import pytest

from anywhere.bridge.commands import (
    CommandError,
    HelpRequested,
    argument,
    command,
    level_for,
    split_command,
    suggest,
)


@command("greet", help="Greet someone")
@argument("name")
@argument("--times", type=int, default=1)
async def greet(ctx, args):  # pragma: no cover - parsing only
    pass


def test_arguments_are_kept_in_the_order_they_are_written():
    args = greet.parse(["Ada", "--times", "3"])
    assert (args.name, args.times) == ("Ada", 3)
    assert greet.usage("!") == "!greet [-h] [--times TIMES] name"


def test_a_missing_argument_names_it_and_gives_the_usage():
    with pytest.raises(CommandError) as err:
        greet.parse([])
    assert "the following arguments are required: name" in err.value.message
    assert "usage: !greet" in err.value.usage


def test_a_bad_value_says_what_was_wrong():
    with pytest.raises(CommandError) as err:
        greet.parse(["Ada", "--times", "many"])
    assert "invalid int value: 'many'" in err.value.message


def test_help_flag_returns_the_help_instead_of_exiting():
    with pytest.raises(HelpRequested) as err:
        greet.parse(["--help"])
    assert "Greet someone" in err.value.text


def test_split_command_needs_the_prefix_outside_direct_chats():
    assert split_command("!greet Ada", "!", prefix_optional=False) == ["greet", "Ada"]
    assert split_command("greet Ada", "!", prefix_optional=False) is None
    assert split_command("greet Ada", "!", prefix_optional=True) == ["greet", "Ada"]
    assert split_command("! greet", "!", prefix_optional=False) is None
    assert split_command('!greet "Ada Lovelace"', "!", prefix_optional=False) == [
        "greet",
        "Ada Lovelace",
    ]


def test_unbalanced_quotes_are_a_clear_error():
    with pytest.raises(CommandError, match="check your quotes"):
        split_command('!greet "Ada', "!", prefix_optional=False)


def test_unknown_commands_get_a_suggestion():
    assert suggest("pnig", ["ping", "help", "whoami"]) == "ping"
    assert suggest("zzzz", ["ping", "help"]) is None


def test_permission_levels_most_specific_wins():
    permissions = {
        "*": "none",
        "example.org": "user",
        "@boss:example.org": "admin",
        "@troll:example.org": "none",
    }
    assert level_for("@boss:example.org", permissions) == 2
    assert level_for("@ada:example.org", permissions) == 1
    assert level_for("@troll:example.org", permissions) == 0
    assert level_for("@eve:elsewhere.net", permissions) == 0
    assert level_for("@eve:elsewhere.net", {"example.org": "user"}) == 0
