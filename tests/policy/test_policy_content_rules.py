"""copyright_media: music and video stay in the drive; the strictest look wins."""

from __future__ import annotations

import pytest

COPYRIGHT = {"type": "copyright_media", "id": "copyright"}


@pytest.mark.parametrize(
    ("facts", "outcome", "code"),
    [
        ({"media_kind_sniffed": "video"}, "deny", "copyright_media"),
        ({"media_kind_extension": "audio"}, "deny", "copyright_media"),
        ({"media_kind_declared": "video"}, "deny", "copyright_media"),
        (
            {"media_kind_sniffed": "document", "media_kind_extension": "audio"},
            "deny",
            "copyright_media",
        ),
        ({"media_kind_sniffed": ["document", "video"]}, "deny", "copyright_media"),
        (
            {"media_kind_sniffed": "document", "media_kind_declared": "image"},
            "allow",
            "not_copyright_media",
        ),
        ({}, "allow", "no_rule"),
    ],
)
def test_copyright_media_denies_audio_and_video_shares(decide, facts, outcome, code):
    decision = decide([COPYRIGHT], "drive.share", **facts)
    assert (decision.outcome, decision.code) == (outcome, code)


def test_copyright_denial_says_which_look_found_it(decide):
    decision = decide(
        [COPYRIGHT], "drive.share", media_kind_sniffed="video", media_kind_extension="document"
    )
    assert "video, judging by its content" in decision.reason
    assert "stays in your drive" in decision.reason


def test_copyright_kinds_are_configurable_and_rule_covers_shares_only(decide):
    rule = {**COPYRIGHT, "kinds": ["archive"]}
    assert not decide([rule], "drive.share", media_kind_sniffed="archive").allowed
    assert decide([rule], "drive.share", media_kind_sniffed="video").allowed
    assert decide([COPYRIGHT], "drive.invite", media_kind_sniffed="video").allowed
