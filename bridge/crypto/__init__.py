"""End-to-end encryption for the bridge's bot (docs/encryption.md): Olm/Megolm with
vodozemac, the device created through the appservice API (MSC4190), keys in the bridge's
database."""

from .service import EncryptingAppServiceAPI, Encryption, pickle_key

__all__ = ["EncryptingAppServiceAPI", "Encryption", "pickle_key"]
