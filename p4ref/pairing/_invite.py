"""Invitation formats (p4-02 §5): the short code and the ``p4:pair`` URI, plus the wordlist.

Two ways to carry one invitation; both end in the same PAKE (p4-02 §7) with a different password:

- short code ``<nameplate>-<odd word>-<even word>`` (magic-wormhole style): the nameplate is a
  decimal number 1–9999999 that names the pairing rendezvous (the onion is derived from it
  alone); the two words are the secret, 8 bits each from the PGP word list (16 bits in all).
- URI ``p4:pair?v=1&o=<onion>&s=<secret>&i=<key commitment>&x=<expiry>``: the inviter's pairing
  onion (56-character v3 label, no ``.onion``), a 256-bit secret in unpadded lowercase base32, a
  16-byte commitment to the inviter's identity key (base32), and the expiry as Unix seconds.  The
  onion is derived from the secret, so a receiver can check the two agree.

Text rules are ASCII-only (p4-02 §5.4): only SP, HT, LF and CR are stripped, only A–Z are
lower-cased, and any other non-ASCII character makes the input malformed.

Everything here is pure: randomness comes in as bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ..errors import ErrorCode, LocalProtocolError
from ._crypto import (
    PROTOCOL_VERSION,
    URI_KEY_COMMITMENT_LEN,
    inviter_key_commitment,
    nameplate_onion_seed,
    pairing_onion_seed,
)

__all__ = [
    "CODE_RANDOM_LEN",
    "EVEN_WORDS",
    "MAX_NAMEPLATE",
    "NAMEPLATE_SPACE",
    "ODD_WORDS",
    "SECRET_LEN",
    "InviteUri",
    "ShortCode",
    "ascii_fold",
    "onion_for_seed",
    "parse_code",
    "parse_uri",
]

#: Nameplates are 1 … 9,999,999 (at most 7 digits): 2^23.25 values, at least 2^20 (p4-02 §5.1).
MAX_NAMEPLATE = 9_999_999
NAMEPLATE_SPACE = MAX_NAMEPLATE
SECRET_LEN = 32
#: Random bytes a new short code consumes: 4 for the nameplate, 1 per word.
CODE_RANDOM_LEN = 6

_NAMEPLATE_RE = re.compile(r"[1-9][0-9]{0,6}")
_ONION_RE = re.compile(r"[a-z2-7]{56}")
_B32_SECRET_RE = re.compile(r"[a-z2-7]{52}")
_B32_KEY_COMMITMENT_RE = re.compile(r"[a-z2-7]{26}")
_VERSION_RE = re.compile(r"[1-9][0-9]{0,2}")
_EXPIRY_RE = re.compile(r"0|[1-9][0-9]{0,15}")
_ASCII_WS = " \t\n\r"  # the only characters stripped (p4-02 §5.4)
_UPPER_TO_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_fold(text: str, code: ErrorCode) -> str:
    """The ASCII text rule of p4-02 §5.4: refuse any character outside U+0000–U+007F with
    ``code``, strip SP, HT, LF and CR at both ends, and lower-case A–Z (nothing else)."""
    if not text.isascii():
        raise LocalProtocolError(code, "non-ASCII character")
    return text.strip(_ASCII_WS).translate(_UPPER_TO_LOWER)


def onion_for_seed(seed: bytes) -> str:
    """The 56-character v3 onion label of a 32-byte seed (p4-03's derivation, rend-spec-v3 §6)."""
    from ..rendezvous._onion import onion_address_from_seed  # lazy: rendezvous is a layer above

    return onion_address_from_seed(seed)


# --- short code (p4-02 §5.1) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShortCode:
    """A parsed short code.  ``str(code)`` is the canonical form that is the PAKE password."""

    nameplate: int
    words: tuple[str, str]

    def __post_init__(self) -> None:
        # p4-02 §5.1 [PAIR-6]: nameplate 1..9999999, first word odd, second word even list
        if not 1 <= self.nameplate <= MAX_NAMEPLATE:
            raise LocalProtocolError(ErrorCode.PAIR_CODE_MALFORMED, "nameplate out of range")
        if self.words[0] not in _ODD_INDEX or self.words[1] not in _EVEN_INDEX:
            raise LocalProtocolError(ErrorCode.PAIR_CODE_MALFORMED, "word not in its list")

    def __str__(self) -> str:
        return f"{self.nameplate}-{self.words[0]}-{self.words[1]}"

    @property
    def slot(self) -> str:
        """The invitation slot bound into the PAKE: the nameplate in decimal."""
        return str(self.nameplate)

    @property
    def password(self) -> bytes:
        return str(self).encode("ascii")

    @property
    def onion_seed(self) -> bytes:
        return nameplate_onion_seed(self.nameplate)

    @classmethod
    def generate(cls, random6: bytes) -> ShortCode:
        """A new code from 6 random bytes [PAIR-4]: the nameplate from bytes 0–3
        (``1 + u32be mod 9999999``), the words from bytes 4 and 5."""
        if len(random6) != CODE_RANDOM_LEN:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "a short code needs 6 random bytes")
        nameplate = 1 + int.from_bytes(random6[:4], "big") % MAX_NAMEPLATE
        return cls(nameplate, (ODD_WORDS[random6[4]], EVEN_WORDS[random6[5]]))


def parse_code(text: str) -> ShortCode:
    """Parse a short code typed by a person (p4-02 §5.1).

    ASCII only (§5.4): SP, HT, LF and CR around the code are ignored and A–Z read as a–z;
    anything else must be exactly ``<nameplate>-<odd word>-<even word>``.

    Raises:
        LocalProtocolError: PAIR_CODE_MALFORMED.
    """
    parts = ascii_fold(text, ErrorCode.PAIR_CODE_MALFORMED).split("-")
    if len(parts) != 3 or not _NAMEPLATE_RE.fullmatch(parts[0]):
        raise LocalProtocolError(ErrorCode.PAIR_CODE_MALFORMED, "expected nameplate-word-word")
    return ShortCode(int(parts[0]), (parts[1], parts[2]))


# --- URI (p4-02 §5.2) ------------------------------------------------------------------------


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


@dataclass(frozen=True, slots=True)
class InviteUri:
    """A parsed ``p4:pair`` URI.  ``expires`` is Unix time in seconds; ``key_commitment`` is
    the 16-byte commitment to the inviter's identity key (§5.2) that the accepter checks."""

    secret: bytes
    expires: int
    key_commitment: bytes
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if len(self.secret) != SECRET_LEN:
            raise LocalProtocolError(ErrorCode.PAIR_URI_MALFORMED, "secret is 32 bytes")
        if len(self.key_commitment) != URI_KEY_COMMITMENT_LEN:
            raise LocalProtocolError(ErrorCode.PAIR_URI_MALFORMED, "key commitment is 16 bytes")

    @classmethod
    def create(cls, secret: bytes, expires: int, inviter_public_key: bytes) -> InviteUri:
        """The inviter's URI: its secret, its expiry and its identity public key [PAIR-10]."""
        return cls(secret, expires, inviter_key_commitment(inviter_public_key))

    slot = "uri"

    @property
    def password(self) -> bytes:
        return self.secret

    @property
    def onion_seed(self) -> bytes:
        return pairing_onion_seed(self.secret)

    @property
    def onion(self) -> str:
        return onion_for_seed(self.onion_seed)

    def __str__(self) -> str:
        return (
            f"p4:pair?v={self.version}&o={self.onion}&s={_b32(self.secret)}"
            f"&i={_b32(self.key_commitment)}&x={self.expires}"
        )


_URI_PREFIX = "p4:pair?"
_URI_KEYS = ("v", "o", "s", "i", "x")


def _b32_canonical(text: str, what: str) -> bytes:
    """Decode unpadded lower-case base32 whose spare bits are zero [PAIR-14]."""
    try:
        raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except binascii.Error:  # pragma: no cover - the grammar already excludes this
        raise LocalProtocolError(ErrorCode.PAIR_URI_MALFORMED, f"bad base32 {what}") from None
    if _b32(raw) != text:  # the spare bits of the last character must be zero
        raise LocalProtocolError(ErrorCode.PAIR_URI_MALFORMED, f"non-canonical base32 {what}")
    return raw


def parse_uri(text: str) -> InviteUri:
    """Parse a ``p4:pair`` URI (p4-02 §5.2), checking in the order of §5.2 [PAIR-12]…[PAIR-15].

    ASCII only (§5.4); the whole URI is case-insensitive; SP, HT, LF and CR around it are
    ignored.  The five parameters ``v``, ``o``, ``s``, ``i``, ``x`` must each appear exactly
    once, in any order, and nothing else.

    Raises:
        LocalProtocolError: VERSION_UNSUPPORTED for a well-formed ``v`` other than 1 (checked as
            soon as the parameters are split, before any other value); PAIR_URI_MALFORMED for
            anything else that is wrong, including an onion that does not match the secret.
    """
    malformed = ErrorCode.PAIR_URI_MALFORMED
    s = ascii_fold(text, malformed)
    if not s.startswith(_URI_PREFIX):
        raise LocalProtocolError(malformed, "not a p4:pair? URI")
    params: dict[str, str] = {}
    for item in s[len(_URI_PREFIX) :].split("&"):
        key, sep, value = item.partition("=")
        if not sep or not key or key in params:
            raise LocalProtocolError(malformed, f"bad or repeated parameter {key!r}")
        params[key] = value
    v = params.get("v")
    if v is not None and _VERSION_RE.fullmatch(v) and int(v) != PROTOCOL_VERSION:
        raise LocalProtocolError(ErrorCode.VERSION_UNSUPPORTED, f"pairing v{v}")
    if set(params) != set(_URI_KEYS):
        raise LocalProtocolError(malformed, "parameters must be exactly v, o, s, i, x")
    grammar = {"v": _VERSION_RE, "o": _ONION_RE, "s": _B32_SECRET_RE,
               "i": _B32_KEY_COMMITMENT_RE, "x": _EXPIRY_RE}  # fmt: skip
    for key in _URI_KEYS:
        if not grammar[key].fullmatch(params[key]):
            raise LocalProtocolError(malformed, f"bad value of {key}")
    secret = _b32_canonical(params["s"], "secret")
    commitment = _b32_canonical(params["i"], "key commitment")
    uri = InviteUri(secret, int(params["x"]), commitment)
    if uri.onion != params["o"]:
        raise LocalProtocolError(malformed, "onion does not match the secret")
    return uri


# --- the PGP word list (p4-02 §5.1, Appendix A) ---------------------------------------------
# Juola and Zimmermann's PGP word list, lower-cased: the odd list (three syllables) gives the
# first word, the even list (two syllables) the second; index = the byte value.  Transcribed
# from magic-wormhole's src/wormhole/_wordlist.py; tests pin its SHA-256.

# fmt: off
ODD_WORDS: tuple[str, ...] = (
    "adroitness", "adviser", "aftermath", "aggregate", "alkali", "almighty", "amulet", "amusement",
    "antenna", "applicant", "apollo", "armistice", "article", "asteroid", "atlantic", "atmosphere",
    "autopsy", "babylon", "backwater", "barbecue", "belowground", "bifocals", "bodyguard",
    "bookseller", "borderline", "bottomless", "bradbury", "bravado", "brazilian", "breakaway",
    "burlington", "businessman", "butterfat", "camelot", "candidate", "cannonball", "capricorn",
    "caravan", "caretaker", "celebrate", "cellulose", "certify", "chambermaid", "cherokee",
    "chicago", "clergyman", "coherence", "combustion", "commando", "company", "component",
    "concurrent", "confidence", "conformist", "congregate", "consensus", "consulting", "corporate",
    "corrosion", "councilman", "crossover", "crucifix", "cumbersome", "customer", "dakota",
    "decadence", "december", "decimal", "designing", "detector", "detergent", "determine",
    "dictator", "dinosaur", "direction", "disable", "disbelief", "disruptive", "distortion",
    "document", "embezzle", "enchanting", "enrollment", "enterprise", "equation", "equipment",
    "escapade", "eskimo", "everyday", "examine", "existence", "exodus", "fascinate", "filament",
    "finicky", "forever", "fortitude", "frequency", "gadgetry", "galveston", "getaway", "glossary",
    "gossamer", "graduate", "gravity", "guitarist", "hamburger", "hamilton", "handiwork",
    "hazardous", "headwaters", "hemisphere", "hesitate", "hideaway", "holiness", "hurricane",
    "hydraulic", "impartial", "impetus", "inception", "indigo", "inertia", "infancy", "inferno",
    "informant", "insincere", "insurgent", "integrate", "intention", "inventive", "istanbul",
    "jamaica", "jupiter", "leprosy", "letterhead", "liberty", "maritime", "matchmaker", "maverick",
    "medusa", "megaton", "microscope", "microwave", "midsummer", "millionaire", "miracle",
    "misnomer", "molasses", "molecule", "montana", "monument", "mosquito", "narrative", "nebula",
    "newsletter", "norwegian", "october", "ohio", "onlooker", "opulent", "orlando", "outfielder",
    "pacific", "pandemic", "pandora", "paperweight", "paragon", "paragraph", "paramount",
    "passenger", "pedigree", "pegasus", "penetrate", "perceptive", "performance", "pharmacy",
    "phonetic", "photograph", "pioneer", "pocketful", "politeness", "positive", "potato",
    "processor", "provincial", "proximate", "puberty", "publisher", "pyramid", "quantity",
    "racketeer", "rebellion", "recipe", "recover", "repellent", "replica", "reproduce", "resistor",
    "responsive", "retraction", "retrieval", "retrospect", "revenue", "revival", "revolver",
    "sandalwood", "sardonic", "saturday", "savagery", "scavenger", "sensation", "sociable",
    "souvenir", "specialist", "speculate", "stethoscope", "stupendous", "supportive", "surrender",
    "suspicious", "sympathy", "tambourine", "telephone", "therapist", "tobacco", "tolerance",
    "tomorrow", "torpedo", "tradition", "travesty", "trombonist", "truncated", "typewriter",
    "ultimate", "undaunted", "underfoot", "unicorn", "unify", "universe", "unravel", "upcoming",
    "vacancy", "vagabond", "vertigo", "virginia", "visitor", "vocalist", "voyager", "warranty",
    "waterloo", "whimsical", "wichita", "wilmington", "wyoming", "yesteryear", "yucatan",
)
EVEN_WORDS: tuple[str, ...] = (
    "aardvark", "absurd", "accrue", "acme", "adrift", "adult", "afflict", "ahead", "aimless",
    "algol", "allow", "alone", "ammo", "ancient", "apple", "artist", "assume", "athens", "atlas",
    "aztec", "baboon", "backfield", "backward", "banjo", "beaming", "bedlamp", "beehive",
    "beeswax", "befriend", "belfast", "berserk", "billiard", "bison", "blackjack", "blockade",
    "blowtorch", "bluebird", "bombast", "bookshelf", "brackish", "breadline", "breakup",
    "brickyard", "briefcase", "burbank", "button", "buzzard", "cement", "chairlift", "chatter",
    "checkup", "chisel", "choking", "chopper", "christmas", "clamshell", "classic", "classroom",
    "cleanup", "clockwork", "cobra", "commence", "concert", "cowbell", "crackdown", "cranky",
    "crowfoot", "crucial", "crumpled", "crusade", "cubic", "dashboard", "deadbolt", "deckhand",
    "dogsled", "dragnet", "drainage", "dreadful", "drifter", "dropper", "drumbeat", "drunken",
    "dupont", "dwelling", "eating", "edict", "egghead", "eightball", "endorse", "endow", "enlist",
    "erase", "escape", "exceed", "eyeglass", "eyetooth", "facial", "fallout", "flagpole",
    "flatfoot", "flytrap", "fracture", "framework", "freedom", "frighten", "gazelle", "geiger",
    "glitter", "glucose", "goggles", "goldfish", "gremlin", "guidance", "hamlet", "highchair",
    "hockey", "indoors", "indulge", "inverse", "involve", "island", "jawbone", "keyboard",
    "kickoff", "kiwi", "klaxon", "locale", "lockup", "merit", "minnow", "miser", "mohawk", "mural",
    "music", "necklace", "neptune", "newborn", "nightbird", "oakland", "obtuse", "offload",
    "optic", "orca", "payday", "peachy", "pheasant", "physique", "playhouse", "pluto", "preclude",
    "prefer", "preshrunk", "printer", "prowler", "pupil", "puppy", "python", "quadrant", "quiver",
    "quota", "ragtime", "ratchet", "rebirth", "reform", "regain", "reindeer", "rematch", "repay",
    "retouch", "revenge", "reward", "rhythm", "ribcage", "ringbolt", "robust", "rocker", "ruffled",
    "sailboat", "sawdust", "scallion", "scenic", "scorecard", "scotland", "seabird", "select",
    "sentence", "shadow", "shamrock", "showgirl", "skullcap", "skydive", "slingshot", "slowdown",
    "snapline", "snapshot", "snowcap", "snowslide", "solo", "southward", "soybean", "spaniel",
    "spearhead", "spellbind", "spheroid", "spigot", "spindle", "spyglass", "stagehand", "stagnate",
    "stairway", "standard", "stapler", "steamship", "sterling", "stockman", "stopwatch", "stormy",
    "sugar", "surmount", "suspense", "sweatband", "swelter", "tactics", "talon", "tapeworm",
    "tempest", "tiger", "tissue", "tonic", "topmost", "tracker", "transit", "trauma", "treadmill",
    "trojan", "trouble", "tumor", "tunnel", "tycoon", "uncut", "unearth", "unwind", "uproot",
    "upset", "upshot", "vapor", "village", "virus", "vulcan", "waffle", "wallet", "watchword",
    "wayside", "willow", "woodlark", "zulu",
)
# fmt: on

_ODD_INDEX = {w: i for i, w in enumerate(ODD_WORDS)}
_EVEN_INDEX = {w: i for i, w in enumerate(EVEN_WORDS)}
