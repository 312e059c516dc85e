"""Seeded, labelled multi-source customer records for evaluating identity resolution.

``generate_customer_records(people, seed)`` invents ``people`` customers of a shop in seven
countries and returns the records its systems hold about them, one row per record, with the
ground truth (``person_id``, ``household_id``) beside the values as each source typed them:

* ``web``: web-shop sign-ups and account updates. Name, e-mail always, phone about half the
  time, sometimes a birth date or a delivery address; ``user_id`` is the shop account.
* ``crm``: the customer-service CRM. Nearly every field, with the spellings a CRM collects
  (typos, capitals, nicknames, swapped names, day and month swapped); ``crm_id`` is its key,
  and a person entered twice gets two.
* ``till``: loyalty look-ups at the tills. A phone as the cashier typed it, a name half the
  time, a postcode sometimes, rarely an e-mail.
* ``newsletter``: e-mail only, now and then a first name.
* ``support``: help-desk requesters: a name and an e-mail or a phone.
* ``marketplace``: orders through a marketplace storefront: name, delivery address, phone,
  the shop account as ``user_id`` and, for a third of buyers, the marketplace's masked relay
  address instead of their e-mail.

A person has 1 to 12 records, 2.2 on average (39% have one, 29% two, 17% three), from a
channel mix that depends on whether they shop mostly online (55%) or in stores. A person
has at most one ``user_id`` and no one else has it. ``variant`` lists the perturbations and
hard cases behind each record, for debugging; ``junk`` says a field holds a junk value.

The hard cases, with their shares measured at 100,000 records (45,000 people, seed 1); a
perturbation counts only where it changed the value:

* households: 39% of people share a household of 2 to 5 customers (13/4/2/1% of
  households have 2/3/4/5). Members share the address and, 90% of them, the surname. 45%
  of those households (12% of single people) have a landline, given in a third of their
  members' phone fields (5% of records, 9% of people); 25% have a family e-mail
  ("garcia.family@..."), used always by 20% and sometimes by 40% of the members (3% of
  records).
* namesakes: 3% of people come in pairs with the same first name, surname(s) and city, and
  half the time postcode, but another street, phone and e-mail; common names add more.
* movers and changes: 7% of people move (a new street, half the time a new city), half of
  them with a new phone and 40% with a new e-mail; another 4% change only their phone and
  5% only their e-mail. Records after the change carry the new values (moved 3.5%, new
  phone 2.1%, new e-mail 2.5% of records).
* nicknames (Robert/Bob, Francisco/Paco, Giuseppe/Beppe, Johannes/Hans, Cornelis/Kees...):
  16% of people have a formal first name with a nickname; 45% of them go by it. 7% of
  people, 4.8% of records, show a nickname.
* diacritics dropped (José/Jose, Müller/Muller; German ones half the time as ae/oe/ue/ss,
  Müller/Mueller): 5.5% of records, from 15% of records with accents on the web to 60% at
  the tills. Spanish double surnames ("García López", 85% of Spanish people): 5.5% of
  records keep only the first.
* names: a one-edit typo (a neighbouring key, a deletion, a doubled letter, a
  transposition) in the first name of 1.9% and the surname of 2.3% of records (streets
  0.7%, cities 0.3%); first and last name swapped in 1.3%; upper case 7.5%, lower case
  4.6%; an initial for the first name ("J.") in 1.0%.
* e-mail: capitals in 5.2% of records, dots added or removed at gmail.example (the one
  provider here that ignores them) 3.1%, +tags 2.6%, stray spaces 0.5%, a domain typo
  0.3%, the marketplace relay address 4.4%.
* phones in six styles per country: E.164 (15% of records), international with spaces
  (6%), a 00 prefix (2%), national (16%), bare digits (15%) and one local habit (5%:
  0151/12345678, 06.12.34.56.78, 06-12345678, +44 (0)7700 900123, 212-555-0123...). 0.35%
  have two digits swapped, which now and then gives another customer's number.
* addresses: street types abbreviated (Calle/C/, Straße/Str., Street/St, Via/V.) in 4.6% of
  records; postcodes without their space (1.8%) or with the leading zero a spreadsheet
  dropped (0.05%).
* junk, on 5.8% of records (tills and CRM most): e-mails such as none@none.com,
  noemail@noemail.com, test@test.com or a placeholder in the country's language (1.5%);
  phones such as 00000000 or 123456789 (1.0%) and, above all, the store's own number in
  that country typed in for customers who gave none (1.6%); placeholder names such as Test
  Test, Max Mustermann, Joe Bloggs, Cliente Contado (0.9%); default birth dates 1900-01-01,
  1970-01-01, 2000-01-01 (1.0%). The common junk e-mails each recur across 80 to 500
  people (the national ones across 14 to 32), the store phones across 110 to 300, while no
  genuine e-mail or phone is shared by more than five people (a household): a detector
  finds them by frequency, and the store phones are on no list.

``exact_stitch_baseline`` is the baseline to beat: connected components over records that
share a normalised e-mail or phone. On the data above it scores a pair F1 of 0.008
(precision 0.004: junk values chain thousands of records together; recall 0.74), B-cubed F1
0.88; ignoring values found on more than 20 records lifts the pair F1 to 0.80 (precision
0.86: households and rarer junk; recall 0.74). ``pairwise_scores`` is the one scorer for bench
scripts.

Everything comes from ``numpy.random.default_rng(seed)``; the name, street and city pools
are drawn once per process from seeded Faker providers and are the same for every seed. The
work is vectorised with numpy over those pools, and Python runs only over distinct values or
small subsets: 1,000,000 records (450,000 people) take about 11 s, 10,000 about 0.15 s (plus
about 1 s once per process for the pools); phone numbers run out past 2,000,000 people.
E-mail domains are reserved (``.example``, RFC 2606) except the classic junk values; GB and
US numbers are in or beside the ranges kept for fiction (07700, 020 7946, 0113 496...,
the 555 exchange).
"""

from __future__ import annotations

import functools
import importlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DEFAULT_COUNTRIES",
    "MAX_PEOPLE",
    "SOURCES",
    "exact_stitch_baseline",
    "generate_customer_records",
    "pairwise_scores",
]

SOURCES = ("web", "crm", "till", "newsletter", "support", "marketplace")
WEB, CRM, TILL, NEWS, SUPPORT, MARKET = range(6)
DEFAULT_COUNTRIES = ("ES", "DE", "FR", "GB", "IT", "NL", "US")
MAX_PEOPLE = 2_000_000  # the GB and US phone ranges run out beyond

# ------------------------------------------------------------------------ reference data


@dataclass(frozen=True)
class _Spec:
    locale: str
    calling_code: str
    weight: float
    trunk: str  # national trunk prefix ("" where the number is dialled as it is)


_SPECS = {
    "ES": _Spec("es_ES", "34", 0.20, ""),
    "DE": _Spec("de_DE", "49", 0.20, "0"),
    "FR": _Spec("fr_FR", "33", 0.15, "0"),
    "GB": _Spec("en_GB", "44", 0.14, "0"),
    "IT": _Spec("it_IT", "39", 0.10, ""),
    "NL": _Spec("nl_NL", "31", 0.08, "0"),
    "US": _Spec("en_US", "1", 0.13, ""),
}

_EN_NICK = {
    "Robert": ("m", ("Bob", "Rob", "Bobby")),
    "William": ("m", ("Bill", "Will")),
    "Richard": ("m", ("Rick", "Rich")),
    "Edward": ("m", ("Ed", "Ted")),
    "Michael": ("m", ("Mike",)),
    "Christopher": ("m", ("Chris",)),
    "Thomas": ("m", ("Tom", "Tommy")),
    "James": ("m", ("Jim", "Jamie")),
    "Joseph": ("m", ("Joe",)),
    "Anthony": ("m", ("Tony",)),
    "Alexander": ("m", ("Alex",)),
    "Nicholas": ("m", ("Nick",)),
    "Daniel": ("m", ("Dan", "Danny")),
    "Matthew": ("m", ("Matt",)),
    "Andrew": ("m", ("Andy", "Drew")),
    "Benjamin": ("m", ("Ben",)),
    "Jonathan": ("m", ("Jon",)),
    "Charles": ("m", ("Charlie",)),
    "David": ("m", ("Dave",)),
    "Steven": ("m", ("Steve",)),
    "Elizabeth": ("f", ("Liz", "Beth", "Lizzie")),
    "Katherine": ("f", ("Kate", "Katie", "Kathy")),
    "Margaret": ("f", ("Maggie", "Peggy")),
    "Jennifer": ("f", ("Jen", "Jenny")),
    "Rebecca": ("f", ("Becky",)),
    "Victoria": ("f", ("Vicky",)),
    "Samantha": ("f", ("Sam",)),
    "Patricia": ("f", ("Pat", "Trish")),
    "Susan": ("f", ("Sue",)),
    "Jessica": ("f", ("Jess",)),
    "Deborah": ("f", ("Debbie",)),
}
# Formal first names and the nicknames people put on forms instead, per country; the formal
# names are added to the Faker name pools (15% of the draws) so nicknames occur.
_NICKNAMES: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "GB": _EN_NICK,
    "US": _EN_NICK,
    "ES": {
        "José": ("m", ("Pepe",)),
        "Francisco": ("m", ("Paco", "Curro")),
        "Manuel": ("m", ("Manolo",)),
        "Ignacio": ("m", ("Nacho",)),
        "Enrique": ("m", ("Quique",)),
        "Jesús": ("m", ("Chus", "Chuy")),
        "Antonio": ("m", ("Toño",)),
        "Santiago": ("m", ("Santi",)),
        "Eduardo": ("m", ("Edu",)),
        "Ramón": ("m", ("Moncho",)),
        "Dolores": ("f", ("Lola",)),
        "Concepción": ("f", ("Concha",)),
        "Rosario": ("f", ("Charo",)),
        "Mercedes": ("f", ("Merche",)),
        "Francisca": ("f", ("Paqui",)),
        "Guadalupe": ("f", ("Lupe",)),
        "Josefa": ("f", ("Pepa",)),
        "Consuelo": ("f", ("Chelo",)),
    },
    "DE": {
        "Johannes": ("m", ("Hans", "Hannes")),
        "Maximilian": ("m", ("Max",)),
        "Andreas": ("m", ("Andi",)),
        "Wolfgang": ("m", ("Wolf",)),
        "Friedrich": ("m", ("Fritz",)),
        "Heinrich": ("m", ("Heinz",)),
        "Alexander": ("m", ("Alex",)),
        "Christian": ("m", ("Chris",)),
        "Michael": ("m", ("Micha",)),
        "Matthias": ("m", ("Matze",)),
        "Katharina": ("f", ("Kathi", "Katja")),
        "Stefanie": ("f", ("Steffi",)),
        "Franziska": ("f", ("Franzi",)),
        "Susanne": ("f", ("Susi",)),
        "Gabriele": ("f", ("Gabi",)),
        "Elisabeth": ("f", ("Lisa", "Elli")),
        "Margarete": ("f", ("Grete",)),
        "Magdalena": ("f", ("Lena",)),
    },
    "FR": {
        "Nicolas": ("m", ("Nico",)),
        "Frédéric": ("m", ("Fred",)),
        "Christophe": ("m", ("Chris",)),
        "Sébastien": ("m", ("Seb",)),
        "Emmanuel": ("m", ("Manu",)),
        "Alexandre": ("m", ("Alex",)),
        "Philippe": ("m", ("Phil",)),
        "Maximilien": ("m", ("Max",)),
        "Isabelle": ("f", ("Isa",)),
        "Stéphanie": ("f", ("Steph",)),
        "Valérie": ("f", ("Val",)),
        "Catherine": ("f", ("Cathy",)),
        "Véronique": ("f", ("Véro",)),
    },
    "IT": {
        "Giuseppe": ("m", ("Beppe", "Peppe", "Pino")),
        "Giovanni": ("m", ("Gianni",)),
        "Alessandro": ("m", ("Sandro", "Ale")),
        "Vincenzo": ("m", ("Enzo",)),
        "Salvatore": ("m", ("Totò", "Turi")),
        "Francesco": ("m", ("Franco", "Checco")),
        "Domenico": ("m", ("Mimmo",)),
        "Luigi": ("m", ("Gigi",)),
        "Antonio": ("m", ("Tonino", "Toni")),
        "Emanuele": ("m", ("Lele",)),
        "Raffaele": ("m", ("Lello",)),
        "Massimiliano": ("m", ("Max",)),
        "Federica": ("f", ("Fede",)),
        "Giuseppina": ("f", ("Pina",)),
        "Francesca": ("f", ("Franci",)),
    },
    "NL": {
        "Cornelis": ("m", ("Kees",)),
        "Hendrik": ("m", ("Henk",)),
        "Petrus": ("m", ("Piet",)),
        "Jacobus": ("m", ("Jaap", "Koos")),
        "Willem": ("m", ("Wim",)),
        "Johannes": ("m", ("Jan", "Hans")),
        "Gerardus": ("m", ("Gerard", "Gert")),
        "Adrianus": ("m", ("Adrie", "Arie")),
        "Antonius": ("m", ("Toon",)),
        "Franciscus": ("m", ("Frans",)),
        "Johanna": ("f", ("Anneke", "Jo")),
        "Elisabeth": ("f", ("Els", "Lies")),
        "Catharina": ("f", ("Toos",)),
        "Margaretha": ("f", ("Greet",)),
        "Wilhelmina": ("f", ("Mien",)),
    },
}

_COMMON_DOMAINS = (
    ("gmail.example", 30),
    ("outlook.example", 10),
    ("hotmail.example", 8),
    ("yahoo.example", 6),
    ("icloud.example", 6),
)
_LOCAL_DOMAINS = {
    "ES": (("telefonica.example", 6), ("correo.example", 4)),
    "DE": (("gmx.example", 14), ("web.example", 12), ("t-online.example", 6)),
    "FR": (("orange.example", 12), ("free.example", 8), ("laposte.example", 5)),
    "GB": (("btinternet.example", 8), ("sky.example", 5), ("virginmedia.example", 4)),
    "IT": (("libero.example", 12), ("virgilio.example", 6), ("tiscali.example", 4)),
    "NL": (("ziggo.example", 10), ("kpnmail.example", 8), ("xs4all.example", 4)),
    "US": (("aol.example", 6), ("comcast.example", 5), ("protonmail.example", 2)),
}
_DOTLESS = "@gmail.example"  # the provider that ignores dots in the local part
_TAGGABLE = ("@gmail.example", "@outlook.example", "@hotmail.example", "@icloud.example")
_TAGS = ("shop", "news", "promo", "orders", "hp", "2024", "online")
_RELAY_DOMAIN = "relay.marketplace.example"

# Junk values: (value, weight). Staff and forms fill required fields with these.
_JUNK_EMAILS = (
    ("none@none.com", 30),
    ("noemail@noemail.com", 15),
    ("no@email.com", 10),
    ("test@test.com", 10),
    ("na@na.com", 5),
    ("x@x.com", 5),
    ("noreply@shop.example", 10),
)
_JUNK_EMAIL_LOCAL = {
    "ES": "sinemail@sinemail.com",
    "DE": "keine@keine.de",
    "FR": "aucun@aucun.fr",
    "IT": "nessuna@nessuna.it",
    "NL": "geen@geen.nl",
    "GB": "noemail@noemail.co.uk",
    "US": "noemail@noemail.com",
}
_JUNK_PHONES = (
    ("00000000", 20),
    ("000000000", 15),
    ("0000000000", 10),
    ("123456789", 20),
    ("1234567890", 10),
    ("999999999", 10),
    ("111111111", 5),
)
# The store's own number in each country (NSN, split position): typed in at the tills.
_SHOP_PHONES = {
    "ES": ("915550100", 3),
    "DE": ("305550100", 2),
    "FR": ("155500100", 1),
    "GB": ("2079460000", 2),
    "IT": ("0255500100", 2),
    "NL": ("205550100", 2),
    "US": ("2125550100", 3),
}
_JUNK_NAMES = {
    "ES": (("Cliente", "Contado"), ("Cliente", "Genérico")),
    "DE": (("Max", "Mustermann"), ("Kunde", "Laufkunde")),
    "FR": (("Client", "Comptoir"), ("Client", "Divers")),
    "GB": (("Joe", "Bloggs"), ("Walk", "In")),
    "IT": (("Cliente", "Banco"), ("Cliente", "Generico")),
    "NL": (("Klant", "Kassa"), ("Jan", "Modaal")),
    "US": (("John", "Doe"), ("Cash", "Customer")),
}
_JUNK_NAMES_ANY = (("Test", "Test"), ("test", "test"), ("Xxx", "Xxx"))
_JUNK_BIRTH = np.array(["1900-01-01", "1970-01-01", "1900-01-01", "2000-01-01"], "datetime64[D]")
_JUNK_BIRTH = _JUNK_BIRTH.astype(np.int64)  # as days since 1970-01-01

# Street-type abbreviations as staff and customers write them.
_ABBREV: dict[str, tuple[tuple[str, str], ...]] = {
    "ES": (
        (r"^Calle ", "C/ "),
        (r"^Avenida ", "Avda. "),
        (r"^Plaza ", "Pza. "),
        (r"^Paseo ", "Pº "),
        (r"^Camino ", "Cno. "),
        (r"^Ronda ", "Rda. "),
        (r"^Carretera ", "Ctra. "),
    ),
    "DE": ((r"straße\b", "str."), (r"Straße\b", "Str."), (r"platz\b", "pl.")),
    "FR": (
        (r"\bavenue\b", "av."),
        (r"\bboulevard\b", "bd"),
        (r"\brue\b", "r."),
        (r"\bplace\b", "pl."),
        (r"\bchemin\b", "ch."),
        (r"\bimpasse\b", "imp."),
    ),
    "IT": (
        (r"^Via ", "V. "),
        (r"^Piazza ", "P.zza "),
        (r"^Viale ", "V.le "),
        (r"^Corso ", "C.so "),
        (r"^Vicolo ", "Vic. "),
    ),
    "NL": ((r"straat\b", "str."), (r"laan\b", "ln."), (r"plein\b", "pl.")),
}
_EN_ABBREV = (
    (r"\bStreet\b", "St"),
    (r"\bRoad\b", "Rd"),
    (r"\bAvenue\b", "Ave"),
    (r"\bDrive\b", "Dr"),
    (r"\bLane\b", "Ln"),
    (r"\bCourt\b", "Ct"),
    (r"\bPlace\b", "Pl"),
    (r"\bSquare\b", "Sq"),
    (r"\bCrescent\b", "Cres"),
    (r"\bTerrace\b", "Ter"),
    (r"\bBoulevard\b", "Blvd"),
    (r"\bParkway\b", "Pkwy"),
    (r"\bMount\b", "Mt"),
)
_ABBREV["GB"] = _EN_ABBREV
_ABBREV["US"] = _EN_ABBREV

# Phone number spaces, as national significant numbers (NSN): mobile prefixes and landline
# area codes per country.
_DE_MOBILE = (151, 152, 157, 160, 162, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179)
_DE_AREAS = (30, 40, 89, 221, 69, 711, 211, 341, 231, 421, 351, 511, 911)
_GB_AREAS = (113, 114, 115, 116, 117, 118, 121, 131, 141, 151, 161)
_IT_MOBILE = (320, 328, 329, 333, 338, 339, 340, 347, 348, 349, 366, 380, 388, 392)
_IT_AREAS = ("02", "06", "011", "081", "055", "051", "091", "010", "045", "080")
_NL_AREAS = (20, 10, 70, 30, 40, 50, 13, 24)
_US_AREAS = (
    212, 718, 617, 215, 404, 305, 312, 512, 214, 303, 602, 213, 619, 206, 503, 202, 702, 415,
    408, 713, 210, 614, 317, 704, 615, 502, 901, 414, 505, 520, 916, 816, 402, 405, 918, 316,
)  # fmt: skip

# Records per source: presence of each field, and the rate of each perturbation.
#                      web   crm   till  news  supp  mkt
_P_FIRST = np.array([0.98, 0.97, 0.45, 0.35, 0.85, 0.99])
_P_LAST = np.array([0.97, 0.98, 0.55, 0.20, 0.70, 0.99])
_P_EMAIL = np.array([1.00, 0.75, 0.12, 1.00, 0.75, 1.00])
_P_PHONE = np.array([0.45, 0.80, 0.92, 0.03, 0.45, 0.70])
_P_BIRTH = np.array([0.35, 0.60, 0.10, 0.10, 0.00, 0.00])
_P_ADDRESS = np.array([0.50, 0.90, 0.00, 0.00, 0.15, 0.98])
_P_POSTCODE_ONLY = np.array([0.00, 0.00, 0.35, 0.05, 0.00, 0.00])
_P_COUNTRY = np.array([1.00, 0.98, 1.00, 0.80, 0.85, 1.00])
_NICK_PREF = np.array([0.80, 0.40, 0.60, 0.80, 0.80, 0.60])
_NICK_OTHER = np.array([0.04, 0.06, 0.08, 0.04, 0.08, 0.03])
_DROP_SURNAME2 = np.array([0.45, 0.30, 0.60, 0.60, 0.55, 0.45])
_INITIAL = np.array([0.00, 0.03, 0.05, 0.00, 0.00, 0.00])
_ASCII = np.array([0.15, 0.20, 0.60, 0.20, 0.30, 0.40])
_TYPO_FIRST = np.array([0.015, 0.04, 0.05, 0.01, 0.03, 0.01])
_TYPO_LAST = np.array([0.015, 0.05, 0.06, 0.01, 0.03, 0.01])
_TYPO_STREET = np.array([0.01, 0.03, 0.00, 0.00, 0.03, 0.01])
_TYPO_CITY = np.array([0.005, 0.01, 0.01, 0.01, 0.01, 0.005])
_UPPER = np.array([0.02, 0.12, 0.25, 0.01, 0.02, 0.05])
_LOWER = np.array([0.08, 0.02, 0.02, 0.12, 0.10, 0.03])
_SWAP = np.array([0.01, 0.04, 0.03, 0.00, 0.02, 0.01])
_EMAIL_CASE = np.array([0.05, 0.15, 0.10, 0.05, 0.10, 0.00])
_EMAIL_DOTS = np.array([0.15, 0.10, 0.10, 0.15, 0.10, 0.10])
_EMAIL_TAG = np.array([0.08, 0.01, 0.00, 0.12, 0.02, 0.00])
_EMAIL_SPACE = np.array([0.00, 0.02, 0.02, 0.00, 0.01, 0.00])
_EMAIL_TYPO = np.array([0.003, 0.01, 0.01, 0.00, 0.005, 0.00])
_PHONE_TYPO = np.array([0.003, 0.005, 0.01, 0.00, 0.005, 0.002])
_BIRTH_SWAP = np.array([0.005, 0.03, 0.03, 0.02, 0.00, 0.00])
_ABBREV_P = np.array([0.30, 0.30, 0.00, 0.00, 0.30, 0.40])
_POSTCODE_NOSPACE = np.array([0.20, 0.20, 0.30, 0.20, 0.20, 0.10])
_POSTCODE_ZERO = np.array([0.01, 0.03, 0.00, 0.00, 0.01, 0.00])
_USE_LANDLINE = 0.35
_RELAY_SHARE = 0.35  # marketplace buyers whose e-mail is the marketplace's relay address
_JUNK_EMAIL_P = np.array([0.005, 0.03, 0.03, 0.003, 0.01, 0.00])
_JUNK_PHONE_P = np.array([0.01, 0.025, 0.08, 0.00, 0.005, 0.005])
_SHOP_PHONE_SHARE = np.array([0.2, 0.5, 0.7, 0.0, 0.3, 0.0])  # of junk phones: the store's own
_JUNK_NAME_P = np.array([0.003, 0.01, 0.03, 0.00, 0.002, 0.00])
_JUNK_BIRTH_P = np.array([0.01, 0.03, 0.01, 0.00, 0.00, 0.00])
# Phone styles: e164, intl_spaced, intl_00, national, digits, local habit.
_PHONE_STYLES = ("e164", "intl", "intl00", "national", "digits", "local")
_STYLE_P = np.array(
    [
        [0.35, 0.15, 0.03, 0.30, 0.12, 0.05],
        [0.25, 0.15, 0.05, 0.25, 0.15, 0.15],
        [0.02, 0.03, 0.02, 0.35, 0.50, 0.08],
        [0.30, 0.10, 0.05, 0.30, 0.20, 0.05],
        [0.15, 0.15, 0.05, 0.35, 0.20, 0.10],
        [0.70, 0.15, 0.00, 0.10, 0.05, 0.00],
    ]
)
# Channel mix of people who shop mostly online, and of those who shop mostly in stores.
_MIX_ONLINE = np.array([0.30, 0.10, 0.08, 0.20, 0.12, 0.20])
_MIX_STORE = np.array([0.08, 0.30, 0.40, 0.10, 0.08, 0.04])
_ONLINE_SHARE = 0.55

# Person-level rates.
_HH_SIZE_P = np.array([0.80, 0.13, 0.04, 0.02, 0.01])  # households of 1..5 customers
_OWN_SURNAME = 0.10  # household members (not the first) with a surname of their own
_LANDLINE_MULTI, _LANDLINE_SINGLE = 0.45, 0.12
_FAMILY_EMAIL = 0.25  # of multi-person households
_FAMILY_ONLY, _FAMILY_MIX = 0.20, 0.40  # members who use the family e-mail always, sometimes
_NAMESAKES = 0.03
_MOVERS, _MOVER_NEW_PHONE, _MOVER_NEW_EMAIL = 0.07, 0.50, 0.40
_NEW_PHONE, _NEW_EMAIL = 0.04, 0.05
_NICK_PREFERRED = 0.45
_ES_DOUBLE_SURNAME = 0.85
_FORMAL_SHARE = 0.15

# Variant tags, one bit each.
_TAGS_LIST = (
    "nickname",
    "surname1",
    "initial",
    "ascii",
    "translit",
    "typo:first",
    "typo:last",
    "typo:street",
    "typo:city",
    "upper",
    "lower",
    "swapped",
    "email:case",
    "email:dots",
    "email:tag",
    "email:space",
    "email:typo",
    "email:family",
    "email:relay",
    "phone:landline",
    "phone:typo",
    "birth:swapped",
    "street:abbrev",
    "postcode:nospace",
    "postcode:zero",
    "moved",
    "new_phone",
    "new_email",
    "namesake",
    "junk:email",
    "junk:phone",
    "junk:shop_phone",
    "junk:name",
    "junk:birth",
)
_EPOCH = date(1970, 1, 1)
_BIT = {tag: np.int64(1) << np.int64(i) for i, tag in enumerate(_TAGS_LIST)}
_JUNK_BITS = (
    _BIT["junk:email"] | _BIT["junk:phone"] | _BIT["junk:shop_phone"] | _BIT["junk:name"]
) | _BIT["junk:birth"]

# ------------------------------------------------------------------------- string helpers

_FOLD_TABLE = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l"}
)
_DE_TRANSLIT = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"}
)
_NEIGHBOURS = {}
for _row in ("qwertyuiop", "asdfghjkl", "zxcvbnm"):
    for _i, _ch in enumerate(_row):
        _NEIGHBOURS[_ch] = _row[max(0, _i - 1) : _i] + _row[_i + 1 : _i + 2]


@functools.cache
def _strip(text: str) -> str:
    """Drop accents and fold ligatures ("Muñoz" -> "Munoz", "Groß" -> "Gross")."""
    text = unicodedata.normalize("NFKD", text.translate(_FOLD_TABLE))
    return "".join(ch for ch in text if not unicodedata.combining(ch))


@functools.cache
def _translit(text: str) -> str:
    """German transliteration ("Müller" -> "Mueller"), then accents dropped."""
    return _strip(text.translate(_DE_TRANSLIT))


@functools.cache
def _slug(text: str) -> str:
    return "".join(ch for ch in _strip(text).lower() if ch.isascii() and ch.isalnum())


def _typo(text: str, a: float, b: float) -> str:
    """One edit, never on the first character: a neighbouring key, a deletion, a doubled
    letter or two letters transposed (``a`` picks the kind, ``b`` the place)."""
    n = len(text)
    if n < 3:
        return text + text[-1:] if n else text
    i = 1 + int(b * (n - 1))
    op = int(a * 4)
    ch = text[i]
    if op == 0:
        near = _NEIGHBOURS.get(ch.lower())
        if near:
            rep = near[int(a * 997) % len(near)]
            return text[:i] + (rep.upper() if ch.isupper() else rep) + text[i + 1 :]
        op = 1
    if op == 1:
        return text[:i] + text[i + 1 :]
    if op == 2 or i == n - 1 or text[i + 1] == ch:
        return text[:i] + ch + text[i:]
    return text[:i] + text[i + 1] + ch + text[i + 2 :]


def _map_unique(values: np.ndarray, fn) -> list:
    """``[fn(v) for v in values]``, computing ``fn`` once per distinct value."""
    cache = {v: fn(v) for v in set(values.tolist())}
    return [cache[v] for v in values.tolist()]


def _apply(col: np.ndarray, mask: np.ndarray, fn, *args: np.ndarray) -> np.ndarray:
    """Apply ``fn`` in place to ``col[mask]`` (with per-row extra arguments); return the
    mask of rows whose value changed."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return np.zeros(col.size, bool)
    old = col[idx]
    if args:
        new = [
            fn(v, *rest)
            for v, *rest in zip(old.tolist(), *(a[idx].tolist() for a in args), strict=True)
        ]
    else:
        new = _map_unique(old, fn)
    new_arr = np.empty(idx.size, object)
    new_arr[:] = new
    col[idx] = new_arr
    changed = np.zeros(col.size, bool)
    changed[idx] = old != new_arr
    return changed


def _obj(values, size: int | None = None) -> np.ndarray:
    arr = np.empty(len(values) if size is None else size, object)
    if size is None:
        arr[:] = list(values)
    return arr


# ---------------------------------------------------------------------------------- pools


@dataclass(frozen=True)
class _Pool:
    code: str
    male: np.ndarray
    male_p: np.ndarray
    female: np.ndarray
    female_p: np.ndarray
    last: np.ndarray
    last_p: np.ndarray
    streets: np.ndarray
    cities: np.ndarray
    city_p: np.ndarray
    postcodes: np.ndarray  # (cities, 8)
    domains: np.ndarray
    domain_p: np.ndarray
    nick: dict  # formal first name -> nicknames


def _weighted(values) -> tuple[list[str], list[float]]:
    if isinstance(values, dict):
        return list(values), [float(w) for w in values.values()]
    return list(values), [1.0] * len(values)


def _norm(weights) -> np.ndarray:
    w = np.asarray(weights, float)
    return w / w.sum()


@functools.cache
def _pool(code: str) -> _Pool:
    """Names, streets, cities and e-mail domains of one country, drawn once from a seeded
    Faker instance (the same for every seed)."""
    from faker import Generator

    spec = _SPECS[code]
    fk = Generator()
    person = importlib.import_module(f"faker.providers.person.{spec.locale}").Provider(fk)
    fk.add_provider(person)
    address = importlib.import_module(f"faker.providers.address.{spec.locale}").Provider(fk)
    if isinstance(getattr(address, "cities", None), list | tuple):
        address.cities = sorted(address.cities)  # it_IT builds it from a set: hash order
    fk.add_provider(address)
    fk.seed_instance(sum(map(ord, code)) * 7919)
    nick = _NICKNAMES[code]
    firsts = []
    for gender, attr in (("m", "first_names_male"), ("f", "first_names_female")):
        names, weights = _weighted(getattr(person, attr))
        merged: dict[str, float] = {}
        total = sum(weights)
        for name, w in zip(names, weights, strict=True):
            if " " not in name:
                merged[name] = merged.get(name, 0.0) + w / total * (1 - _FORMAL_SHARE)
        formal = [name for name, (g, _) in nick.items() if g == gender]
        for name in formal:
            merged[name] = merged.get(name, 0.0) + _FORMAL_SHARE / len(formal)
        firsts.append((_obj(list(merged)), _norm(list(merged.values()))))
    last, last_w = _weighted(person.last_names)
    streets = sorted({fk.street_name() for _ in range(400)})
    cities = []
    for _ in range(400):
        city = fk.city()
        if city not in cities:
            cities.append(city)
        if len(cities) == 60:
            break
    postcodes = np.array([[fk.postcode() for _ in range(8)] for _ in cities], dtype=object)
    domains = _COMMON_DOMAINS + _LOCAL_DOMAINS[code]
    return _Pool(
        code=code,
        male=firsts[0][0],
        male_p=firsts[0][1],
        female=firsts[1][0],
        female_p=firsts[1][1],
        last=_obj(last),
        last_p=_norm(last_w),
        streets=_obj(streets),
        cities=_obj(cities),
        city_p=_norm(1.0 / np.arange(1, len(cities) + 1) ** 0.9),
        postcodes=postcodes,
        domains=_obj([d for d, _ in domains]),
        domain_p=_norm([w for _, w in domains]),
        nick=nick,
    )


# --------------------------------------------------------------------------------- phones


def _mobile_nsn(code: str, x: np.ndarray) -> tuple[list[str], int]:
    """Distinct draws ``x`` from the country's mobile space -> (NSNs, split position)."""
    x = x.astype(np.int64)
    if code in ("ES", "FR"):
        return [str(v) for v in (600_000_000 + x).tolist()], (3 if code == "ES" else 1)
    if code == "DE":
        pre = np.array(_DE_MOBILE, np.int64)[x % len(_DE_MOBILE)]
        return [str(v) for v in (pre * 10**8 + x // len(_DE_MOBILE)).tolist()], 3
    if code == "GB":
        return [str(v) for v in (7_700_000_000 + x).tolist()], 4
    if code == "IT":
        pre = np.array(_IT_MOBILE, np.int64)[x % len(_IT_MOBILE)]
        return [str(v) for v in (pre * 10**7 + x // len(_IT_MOBILE)).tolist()], 3
    if code == "NL":
        return [str(v) for v in (600_000_000 + x).tolist()], 1
    area = np.array(_US_AREAS, np.int64)[x % len(_US_AREAS)]
    return [str(v) for v in (area * 10**7 + 5_550_000 + x // len(_US_AREAS)).tolist()], 3


_MOBILE_SPACE = {
    "ES": 200_000_000,
    "FR": 200_000_000,
    "DE": len(_DE_MOBILE) * 10**8,
    "GB": 10**6,
    "IT": len(_IT_MOBILE) * 10**7,
    "NL": 10**8,
    "US": len(_US_AREAS) * 10**4,
}
_LANDLINE_SPACE = {
    "ES": 8 * 10**7,
    "FR": 5 * 10**8,
    "DE": len(_DE_AREAS) * 10**6,
    "GB": (len(_GB_AREAS) + 1) * 10**4,
    "IT": len(_IT_AREAS) * 10**6,
    "NL": len(_NL_AREAS) * 10**6,
}


def _landline_nsn(code: str, x: np.ndarray) -> tuple[list[str], list[int]]:
    """Distinct draws ``x`` from the country's landline space -> (NSNs, split positions).
    (US landlines come from the mobile space: the numbers look the same.)"""
    x = x.astype(np.int64).tolist()
    if code == "ES":
        return [str(910_000_000 + v) for v in x], [3] * len(x)  # 91x to 98x
    if code == "FR":
        return [str(100_000_000 + v) for v in x], [1] * len(x)
    if code == "GB":  # 020 7946 xxxx, 0113 496 xxxx...
        areas = ("20",) + tuple(str(a) for a in _GB_AREAS)
        out = [f"{areas[v // 10**4]}{'7946' if v < 10**4 else '496'}{v % 10**4:04d}" for v in x]
        return out, [2 if v < 10**4 else 3 for v in x]
    areas = {"DE": _DE_AREAS, "IT": _IT_AREAS, "NL": _NL_AREAS}[code]
    out, sps = [], []
    for v in x:
        area = str(areas[v % len(areas)])
        rest = (10 if code == "IT" else 9 + len(area) // 3) - len(area)  # NSN length
        out.append(f"{area}{10 ** (rest - 1) + v // len(areas)}")
        sps.append(len(area))
    return out, sps


def _national(code: str, n: str, sp: int) -> str:
    if code == "ES":
        return f"{n[:3]} {n[3:5]} {n[5:7]} {n[7:]}"
    if code == "FR":
        return f"0{n[0]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:]}"
    if code == "DE":
        return f"0{n[:sp]} {n[sp:]}"
    if code == "GB":
        if sp == 4:
            return f"0{n[:4]} {n[4:]}"
        return f"0{n[:sp]} {n[sp : sp + 3 + (sp == 2)]} {n[sp + 3 + (sp == 2) :]}"
    if code == "IT":
        if sp == 3 and n[0] == "3":
            return f"{n[:3]} {n[3:6]} {n[6:]}"
        return f"{n[:sp]} {n[sp : sp + 4]} {n[sp + 4 :]}"
    if code == "NL":
        return f"0{n[:sp]} {n[sp:]}" if sp == 1 else f"0{n[:sp]} {n[sp : sp + 3]} {n[sp + 3 :]}"
    return f"({n[:3]}) {n[3:6]}-{n[6:]}"


def _format_phone(code: str, cc: str, trunk: str, style: int, n: str, sp: int) -> str:
    if style == 0:
        return f"+{cc}{n}"
    if style == 2:
        return f"00{cc}{n}" if code != "US" else f"1-{n[:3]}-{n[3:6]}-{n[6:]}"
    if style == 4:
        return trunk + n
    if style == 1:
        if code == "US":
            return f"+1 {n[:3]} {n[3:6]} {n[6:]}"
        nat = _national(code, n, sp)
        return f"+{cc} {nat[len(trunk) :]}"
    nat = _national(code, n, sp)
    if style == 3:
        return nat
    if code == "ES":
        return f"{n[:3]}-{n[3:6]}-{n[6:]}"
    if code == "DE":
        return f"0{n[:sp]}/{n[sp:]}"
    if code == "FR":
        return nat.replace(" ", ".")
    if code == "GB":
        return f"+44 (0){nat[1:]}"
    if code == "IT":
        return f"+39 {n}"
    if code == "NL":
        return f"0{n[:sp]}-{n[sp:]}"
    return f"{n[:3]}-{n[3:6]}-{n[6:]}"


def _swap_digits(text: str, a: float) -> str:
    """Two adjacent digits typed the wrong way round (away from the prefix)."""
    pos = [i for i, ch in enumerate(text) if ch.isdigit()]
    pairs = [
        (pos[k], pos[k + 1])
        for k in range(4, len(pos) - 1)
        if pos[k + 1] == pos[k] + 1 and text[pos[k]] != text[pos[k + 1]]
    ]
    if not pairs:
        return text
    i, j = pairs[int(a * len(pairs))]
    return text[:i] + text[j] + text[i] + text[j + 1 :]


# ------------------------------------------------------------------------------ addresses


def _street_line(code: str, street: str, number: int, extra: int) -> str:
    if code == "ES":
        line = f"{street}, {number}"
        return line + f", {extra % 8 + 1}º {'ABCD'[extra % 4]}" if extra % 5 < 2 else line
    if code == "DE":
        return f"{street} {number}" + ("a" if extra % 11 == 0 else "")
    if code == "FR":
        return f"{number}{' bis' if extra % 17 == 0 else ''} {street}"
    if code == "GB":
        return (
            f"Flat {extra % 9 + 1}, {number} {street}" if extra % 6 == 0 else f"{number} {street}"
        )
    if code == "IT":
        return f"{street}, {number}" if extra % 2 else f"{street} {number}"
    if code == "NL":
        return f"{street} {number}" + (f"-{extra % 3 + 1}" if extra % 7 == 0 else "")
    line = f"{number * 10 + extra % 10} {street}"
    return line + f" Apt {extra % 20 + 1}" if extra % 5 == 0 else line


@functools.cache
def _abbreviator(code: str):
    """One regular expression for all of a country's street types; returns a function."""
    rules = _ABBREV.get(code, ())
    if not rules:
        return lambda line: line
    regex = re.compile("|".join(f"({pattern})" for pattern, _ in rules))

    def abbreviate(line: str) -> str:
        return regex.sub(lambda m: rules[m.lastindex - 1][1], line, count=1)

    return abbreviate


# --------------------------------------------------------------------------------- emails


def _email_local(pattern: int, f: str, s: str, year: int, num: int) -> str:
    """A local part from first-name and surname slugs ``f`` and ``s``."""
    f = f or "x"
    s = s or "x"
    if pattern == 0:
        return f"{f}.{s}"
    if pattern == 1:
        return f"{f}{s}"
    if pattern == 2:
        return f"{f[0]}{s}"
    if pattern == 3:
        return f"{f}.{s}{year % 100:02d}"
    if pattern == 4:
        return f"{f}_{s}"
    if pattern == 5:
        return f"{s}.{f}"
    if pattern == 6:
        return f"{f}{num}"
    if pattern == 7:
        return f"{f[0]}.{s}"
    if pattern == 8:
        return f"{f}.{s}{num % 100}"
    return f"{s}{f[0]}{year}"


_EMAIL_PATTERN_P = _norm([30, 12, 10, 10, 5, 5, 10, 6, 8, 4])


_SEPARATORS = re.compile("[._-]")


def _dedupe(emails: np.ndarray, rng: np.random.Generator) -> None:
    """Make every address distinct, even with dots, underscores and hyphens ignored, by
    appending digits as the mail provider would have insisted."""
    present = np.flatnonzero(np.not_equal(emails, None))
    keys = pa.array(emails[present], pa.string())
    for sep in "._-":
        keys = pc.replace_substring(keys, sep, "")
    encoded = keys.dictionary_encode()
    first = np.zeros(present.size, bool)
    first[np.unique(encoded.indices.to_numpy(), return_index=True)[1]] = True
    dups = present[~first]
    if dups.size == 0:
        return
    seen = set(encoded.dictionary.to_pylist())
    for i in dups.tolist():
        email = emails[i]
        key = _SEPARATORS.sub("", email)
        while key in seen:
            local, _, domain = email.partition("@")
            email = f"{local}{int(rng.integers(1, 1000))}@{domain}"
            key = _SEPARATORS.sub("", email)
        seen.add(key)
        emails[i] = email


def _dots(email: str, a: float) -> str:
    if not email.endswith(_DOTLESS):
        return email
    local, _, domain = email.partition("@")
    if "." in local and a < 0.6:
        return local.replace(".", "") + "@" + domain
    if len(local) < 3:
        return email
    i = 1 + int(a * 997) % (len(local) - 1)
    if local[i] == "." or local[i - 1] == ".":
        return email
    return f"{local[:i]}.{local[i:]}@{domain}"


def _tag(email: str, a: float) -> str:
    if not email.endswith(_TAGGABLE):
        return email
    local, _, domain = email.partition("@")
    return f"{local}+{_TAGS[int(a * len(_TAGS))]}@{domain}"


def _email_case(email: str, a: float) -> str:
    if a < 0.3:
        return email.upper()
    local, _, domain = email.partition("@")
    local = ".".join(part[:1].upper() + part[1:] for part in local.split("."))
    return local + "@" + (domain.capitalize() if a > 0.7 else domain)


def _space(email: str, a: float) -> str:
    return f" {email}" if a < 0.3 else f"{email} "


def _email_typo(email: str, a: float) -> str:
    local, _, domain = email.partition("@")
    label, _, rest = domain.partition(".")
    return f"{local}@{_typo(label, a, (a * 7.3) % 1)}.{rest}"


# ----------------------------------------------------------------------------- generator


def _choose(rng: np.random.Generator, values: np.ndarray, p: np.ndarray, size: int) -> np.ndarray:
    return values[rng.choice(len(values), size=size, p=p)]


def _sample_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per row, from the probability table row ``rows[i]``."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(rows.size)
    out = np.zeros(rows.size, np.int64)
    for k in range(probs.shape[1] - 1):
        out += u >= cum[rows, k]
    return out


def generate_customer_records(
    people: int, seed: int = 1, *, countries: tuple[str, ...] = DEFAULT_COUNTRIES
) -> pa.Table:
    """Records about ``people`` invented customers, with the ground truth; see the module
    docstring. The same ``people``, ``seed`` and ``countries`` give the same table."""
    if not 0 <= people <= MAX_PEOPLE:
        raise ValueError(f"people must be between 0 and {MAX_PEOPLE:,}")
    unknown = [c for c in countries if c not in _SPECS]
    if unknown or not countries:
        raise ValueError(f"unknown or no countries: {unknown}; known: {sorted(_SPECS)}")
    countries = tuple(dict.fromkeys(countries))
    pools = [_pool(c) for c in countries]
    rng = np.random.default_rng(seed)
    n = int(people)
    nc = len(countries)

    # ---- households and people
    draws = rng.choice(5, size=max(n, 1), p=_HH_SIZE_P) + 1
    cum = np.cumsum(draws)
    nh = int(np.searchsorted(cum, n)) + 1 if n else 0
    sizes = draws[:nh].copy()
    if nh:
        sizes[-1] -= int(cum[nh - 1] - n)
    hh = np.repeat(np.arange(nh), sizes)
    first_member = np.zeros(n, bool)
    first_member[np.cumsum(sizes) - sizes] = True
    multi_h = sizes > 1
    multi = multi_h[hh]
    h_country = rng.choice(nc, size=nh, p=_norm([_SPECS[c].weight for c in countries]))
    country = h_country[hh]
    gender = rng.random(n) < 0.5  # True: female
    h_city = np.zeros(nh, np.int64)
    h_street = _obj((), nh)
    h_last = _obj((), nh)
    h_last1 = _obj((), nh)
    first = _obj((), n)
    for c, pool in enumerate(pools):
        hi = np.flatnonzero(h_country == c)
        h_city[hi] = rng.choice(len(pool.cities), size=hi.size, p=pool.city_p)
        h_street[hi] = pool.streets[rng.integers(0, len(pool.streets), hi.size)]
        l1 = _choose(rng, pool.last, pool.last_p, hi.size)
        h_last1[hi] = l1
        h_last[hi] = l1
        if pool.code == "ES":
            dbl = rng.random(hi.size) < _ES_DOUBLE_SURNAME
            l2 = _choose(rng, pool.last, pool.last_p, hi.size)
            h_last[hi[dbl]] = [f"{a} {b}" for a, b in zip(l1[dbl], l2[dbl], strict=True)]
        pi = np.flatnonzero(country == c)
        fem = gender[pi]
        first[pi[fem]] = _choose(rng, pool.female, pool.female_p, int(fem.sum()))
        first[pi[~fem]] = _choose(rng, pool.male, pool.male_p, int((~fem).sum()))
    last = h_last[hh]
    last1 = h_last1[hh]
    own = ~first_member & (rng.random(n) < _OWN_SURNAME)
    for c, pool in enumerate(pools):
        pi = np.flatnonzero(own & (country == c))
        last[pi] = last1[pi] = _choose(rng, pool.last, pool.last_p, pi.size)

    # namesakes: pairs of single people in one country; the second takes the first's name
    # and city (and half the time postcode), keeping their own street, phone and e-mail
    namesake = np.zeros(n, bool)
    h_postcode_of = np.full(nh, -1, np.int64)  # household whose postcode to copy
    for c in range(nc):
        cand = np.flatnonzero(~multi & (country == c))
        k = min(int(round((country == c).sum() * _NAMESAKES / 2)), cand.size // 2)
        if k == 0:
            continue
        pair = rng.permutation(cand)[: 2 * k].reshape(k, 2)
        a, b = pair[:, 0], pair[:, 1]
        first[b], gender[b], last[b], last1[b] = first[a], gender[a], last[a], last1[a]
        h_city[hh[b]] = h_city[hh[a]]
        copy = rng.random(k) < 0.5
        h_postcode_of[hh[b[copy]]] = hh[a[copy]]
        namesake[a] = namesake[b] = True
    h_post_i = rng.integers(0, 8, nh)
    has_copy = h_postcode_of >= 0
    h_post_i[has_copy] = h_post_i[h_postcode_of[has_copy]]
    double = np.array([" " in s for s in last.tolist()], bool) & (
        country == (countries.index("ES") if "ES" in countries else -1)
    )

    # nicknames
    nick = _obj((), n)
    for c, pool in enumerate(pools):
        pi = np.flatnonzero(country == c)
        opts = pool.nick
        names = first[pi].tolist()
        u = rng.random(pi.size).tolist()
        nick[pi] = [
            opts[f][1][int(x * len(opts[f][1]))] if f in opts else None
            for f, x in zip(names, u, strict=True)
        ]
    has_nick = nick != None  # noqa: E711
    nick_pref = has_nick & (rng.random(n) < _NICK_PREFERRED)

    birth = rng.integers(
        np.datetime64("1940-01-01", "D").astype(np.int64),
        np.datetime64("2006-12-31", "D").astype(np.int64),
        n,
    )

    # movers and changes of phone or e-mail
    mover = rng.random(n) < _MOVERS
    new_phone = np.where(mover, rng.random(n) < _MOVER_NEW_PHONE, rng.random(n) < _NEW_PHONE)
    new_email = np.where(mover, rng.random(n) < _MOVER_NEW_EMAIL, rng.random(n) < _NEW_EMAIL)
    move_t = np.where(mover, rng.uniform(0.2, 0.8, n), 2.0)
    phone_t = np.where(new_phone, np.where(mover, move_t, rng.uniform(0.2, 0.8, n)), 2.0)
    email_t = np.where(new_email, np.where(mover, move_t, rng.uniform(0.2, 0.8, n)), 2.0)
    m_city = h_city[hh].copy()
    moved_city = mover & (rng.random(n) < 0.5)
    m_street = _obj((), n)
    m_post_i = rng.integers(0, 8, n)
    for c, pool in enumerate(pools):
        pi = np.flatnonzero(moved_city & (country == c))
        m_city[pi] = rng.choice(len(pool.cities), size=pi.size, p=pool.city_p)
        pi = np.flatnonzero(mover & (country == c))
        m_street[pi] = pool.streets[rng.integers(0, len(pool.streets), pi.size)]

    # address strings: the household's, and the new one of each mover
    h_num = rng.geometric(0.04, nh).clip(1, 250)
    h_extra = rng.integers(0, 1000, nh)
    m_num = rng.geometric(0.04, n).clip(1, 250)
    m_extra = rng.integers(0, 1000, n)
    h_line = _obj((), nh)
    h_city_s = _obj((), nh)
    h_post = _obj((), nh)
    m_line = _obj((), n)
    m_city_s = _obj((), n)
    m_post = _obj((), n)
    for c, pool in enumerate(pools):
        code = pool.code
        hi = np.flatnonzero(h_country == c)
        h_line[hi] = [
            _street_line(code, s, num, e)
            for s, num, e in zip(
                h_street[hi], h_num[hi].tolist(), h_extra[hi].tolist(), strict=True
            )
        ]
        h_city_s[hi] = pool.cities[h_city[hi]]
        h_post[hi] = pool.postcodes[h_city[hi], h_post_i[hi]]
        pi = np.flatnonzero(mover & (country == c))
        m_line[pi] = [
            _street_line(code, s, num, e)
            for s, num, e in zip(
                m_street[pi], m_num[pi].tolist(), m_extra[pi].tolist(), strict=True
            )
        ]
        m_city_s[pi] = pool.cities[m_city[pi]]
        m_post[pi] = pool.postcodes[m_city[pi], m_post_i[pi]]

    # phones: distinct numbers per country (mobiles, new mobiles, household landlines)
    mob0 = _obj((), n)
    mob1 = _obj((), n)
    mob_sp = np.zeros(n, np.int64)
    h_land = _obj((), nh)
    h_land_sp = np.zeros(nh, np.int64)
    h_has_land = rng.random(nh) < np.where(multi_h, _LANDLINE_MULTI, _LANDLINE_SINGLE)
    for c, pool in enumerate(pools):
        code = pool.code
        pi = np.flatnonzero(country == c)
        pn = np.flatnonzero(new_phone & (country == c))
        hi = np.flatnonzero(h_has_land & (h_country == c))
        shop = _SHOP_PHONES[code][0]
        if code == "US":  # landlines and mobiles share one space
            x = rng.choice(_MOBILE_SPACE[code], size=pi.size + pn.size + hi.size + 1, replace=False)
            nsn, sp = _mobile_nsn(code, x)
            nsn = [v for v in nsn if v != shop][: pi.size + pn.size + hi.size]
            mob0[pi] = nsn[: pi.size]
            mob1[pn] = nsn[pi.size : pi.size + pn.size]
            h_land[hi] = nsn[pi.size + pn.size :]
            mob_sp[pi] = sp
            h_land_sp[hi] = 3
            continue
        x = rng.choice(_MOBILE_SPACE[code], size=pi.size + pn.size, replace=False)
        nsn, sp = _mobile_nsn(code, x)
        mob0[pi] = nsn[: pi.size]
        mob1[pn] = nsn[pi.size :]
        mob_sp[pi] = sp
        x = rng.choice(_LANDLINE_SPACE[code], size=hi.size + 1, replace=False)
        nsn, sps = _landline_nsn(code, x)
        keep = [i for i, v in enumerate(nsn) if v != shop][: hi.size]
        h_land[hi] = [nsn[i] for i in keep]
        h_land_sp[hi] = [sps[i] for i in keep]

    # e-mail addresses: personal (old and new), family, marketplace relay
    fslug = np.array(_map_unique(first, _slug), dtype=object)
    nslug = np.array(_map_unique(np.where(has_nick, nick, first), _slug), dtype=object)
    lslug = np.array(_map_unique(last1, _slug), dtype=object)
    byear = 1970 + birth // 365
    email_mode = np.zeros(n, np.int64)  # 0 personal, 1 both, 2 family only
    h_family = rng.random(nh) < _FAMILY_EMAIL
    in_family = h_family[hh] & multi
    u = rng.random(n)
    email_mode[in_family & (u < _FAMILY_ONLY)] = 2
    email_mode[in_family & (u >= _FAMILY_ONLY) & (u < _FAMILY_ONLY + _FAMILY_MIX)] = 1
    email0 = _obj((), n)
    email1 = _obj((), n)
    for c, pool in enumerate(pools):
        for which, dest, sel in (
            (0, email0, (country == c) & (email_mode < 2)),
            (1, email1, (country == c) & new_email),
        ):
            pi = np.flatnonzero(sel)
            pat = rng.choice(10, size=pi.size, p=_EMAIL_PATTERN_P)
            dom = _choose(rng, pool.domains, pool.domain_p, pi.size)
            num = rng.integers(1, 10_000, pi.size)
            fs = np.where(nick_pref[pi] & (rng.random(pi.size) < 0.5), nslug[pi], fslug[pi])
            dest[pi] = [
                _email_local(p, f, ln, y, k) + "@" + d
                for p, f, ln, y, k, d in zip(
                    pat.tolist(),
                    fs.tolist(),
                    lslug[pi].tolist(),
                    byear[pi].tolist(),
                    (num + which * 7).tolist(),
                    dom.tolist(),
                    strict=True,
                )
            ]
    h_email = _obj((), nh)
    hf = np.flatnonzero(h_family)
    fam_pat = rng.integers(0, 4, hf.size)
    fam_dom = _obj((), hf.size)
    for c, pool in enumerate(pools):
        sel = h_country[hf] == c
        fam_dom[sel] = _choose(rng, pool.domains, pool.domain_p, int(sel.sum()))
    h_lslug = np.array(_map_unique(h_last1, _slug), dtype=object)
    h_email[hf] = [
        ("{0}.family", "familia{0}", "fam.{0}", "the{0}s")[p].format(s) + "@" + d
        for p, s, d in zip(fam_pat.tolist(), h_lslug[hf].tolist(), fam_dom.tolist(), strict=True)
    ]
    all_emails = np.concatenate([email0, email1, h_email])
    _dedupe(all_emails, rng)
    email0, email1, h_email = all_emails[:n], all_emails[n : 2 * n], all_emails[2 * n :]
    key = np.int64(rng.integers(1, 2**40))
    uses_relay = rng.random(n) < _RELAY_SHARE
    user_offset = int(rng.integers(0, 10**9))

    # ---- records
    per_person = 1 + np.minimum(rng.poisson(rng.gamma(2.0, 0.6, n)), 11)
    rp = np.repeat(np.arange(n), per_person)  # by person (faster gathers); shuffled at the end
    r = rp.size
    online = rng.random(n) < _ONLINE_SHARE
    src = _sample_rows(rng, np.stack([_MIX_STORE, _MIX_ONLINE]), online[rp].astype(np.int64))
    t = rng.random(r)
    rc = country[rp]
    bits = np.zeros(r, np.int64)

    def flag(tag: str, mask: np.ndarray) -> None:
        bits[mask] |= _BIT[tag]

    def draw(p: np.ndarray) -> np.ndarray:
        return rng.random(r) < p[src]

    has_first = draw(_P_FIRST)
    has_last = draw(_P_LAST)
    has_email = draw(_P_EMAIL)
    has_phone = draw(_P_PHONE)
    need = (src == SUPPORT) | (src == TILL)
    nothing = need & ~has_email & ~has_phone
    has_email |= nothing & (src == SUPPORT)
    has_phone |= nothing & (src == TILL)
    has_birth = draw(_P_BIRTH)
    has_address = draw(_P_ADDRESS)
    has_postcode = has_address | draw(_P_POSTCODE_ONLY)
    has_country = draw(_P_COUNTRY)
    moved = mover[rp] & (t > move_t[rp])
    flag("moved", moved)
    flag("namesake", namesake[rp])

    # names (a junk name replaces the real one: no perturbation is recorded for it)
    junk_name = draw(_JUNK_NAME_P)
    real_first = has_first & ~junk_name
    real_last = has_last & ~junk_name
    first_r = first[rp]
    last_r = last[rp]
    nick_p = np.where(nick_pref[rp], _NICK_PREF[src], _NICK_OTHER[src])
    use_nick = has_nick[rp] & real_first & (rng.random(r) < nick_p)
    first_r[use_nick] = nick[rp[use_nick]]
    flag("nickname", use_nick)
    drop2 = double[rp] & real_last & draw(_DROP_SURNAME2)
    last_r[drop2] = last1[rp[drop2]]
    flag("surname1", drop2)
    flag("initial", _apply(first_r, real_first & draw(_INITIAL), lambda s: s[:1] + "."))
    street_r = np.where(moved, m_line[rp], h_line[hh[rp]])
    city_r = np.where(moved, m_city_s[rp], h_city_s[hh[rp]])
    post_r = np.where(moved, m_post[rp], h_post[hh[rp]])
    flag("street:abbrev", _abbrev_records(street_r, has_address & draw(_ABBREV_P), rc, countries))
    ascii_r = draw(_ASCII)
    de = countries.index("DE") if "DE" in countries else -1
    translit = ascii_r & (rc == de) & (rng.random(r) < 0.5)
    plain = ascii_r & ~translit
    for col, present in (
        (first_r, real_first),
        (last_r, real_last),
        (street_r, has_address),
        (city_r, has_address),
    ):
        flag("ascii", _apply(col, plain & present, _strip))
        flag("translit", _apply(col, translit & present, _translit))
    for col, present, p, tag in (
        (first_r, real_first, _TYPO_FIRST, "typo:first"),
        (last_r, real_last, _TYPO_LAST, "typo:last"),
        (street_r, has_address, _TYPO_STREET, "typo:street"),
        (city_r, has_address, _TYPO_CITY, "typo:city"),
    ):
        flag(tag, _apply(col, present & draw(p), _typo, rng.random(r), rng.random(r)))
    u = rng.random(r)
    upper = u < _UPPER[src]
    lower = (u >= _UPPER[src]) & (u < _UPPER[src] + _LOWER[src])
    for col, present in ((first_r, real_first), (last_r, real_last)):
        flag("upper", _apply(col, upper & present, str.upper))
        flag("lower", _apply(col, lower & present, str.lower))
    _apply(street_r, upper & has_address, str.upper)
    _apply(city_r, upper & has_address, str.upper)
    swap = real_first & real_last & draw(_SWAP)
    first_r[swap], last_r[swap] = last_r[swap], first_r[swap]
    flag("swapped", swap)
    for c, pool in enumerate(pools):
        ri = np.flatnonzero(junk_name & (rc == c))
        options = _JUNK_NAMES[pool.code] + _JUNK_NAMES_ANY
        pick = rng.integers(0, len(options), ri.size)
        first_r[ri] = [options[k][0] for k in pick.tolist()]
        last_r[ri] = [options[k][1] for k in pick.tolist()]
    has_first |= junk_name
    has_last |= junk_name
    flag("junk:name", junk_name)

    # e-mail (junk replaces the address; case and spaces still happen to junk)
    junk_email = draw(_JUNK_EMAIL_P)
    family = (email_mode[rp] == 2) | ((email_mode[rp] == 1) & (rng.random(r) < 0.5))
    newer = new_email[rp] & (t > email_t[rp])
    email_r = np.where(family, h_email[hh[rp]], np.where(newer, email1[rp], email0[rp]))
    relay_r = (src == MARKET) & uses_relay[rp]
    email_r[relay_r] = _person_ids(
        rp[relay_r], n, lambda p: [f"{v:012x}@{_RELAY_DOMAIN}" for v in _scramble(p, key, 48)]
    )
    ok = has_email & ~relay_r & ~junk_email
    flag("email:family", family & ok)
    flag("email:relay", relay_r & has_email & ~junk_email)
    flag("new_email", newer & ~family & ok)
    flag("email:dots", _apply(email_r, ok & draw(_EMAIL_DOTS), _dots, rng.random(r)))
    flag("email:tag", _apply(email_r, ok & draw(_EMAIL_TAG), _tag, rng.random(r)))
    flag("email:typo", _apply(email_r, ok & draw(_EMAIL_TYPO), _email_typo, rng.random(r)))
    je = np.flatnonzero(junk_email)
    values = [v for v, _ in _JUNK_EMAILS] + ["<local>"]
    weights = _norm([w for _, w in _JUNK_EMAILS] + [10])
    pick = rng.choice(len(values), size=je.size, p=weights)
    email_r[je] = [
        values[k] if k < len(_JUNK_EMAILS) else _JUNK_EMAIL_LOCAL[countries[c]]
        for k, c in zip(pick.tolist(), rc[je].tolist(), strict=True)
    ]
    has_email |= junk_email
    flag("junk:email", junk_email)
    ok = has_email & ~relay_r
    flag("email:case", _apply(email_r, ok & draw(_EMAIL_CASE), _email_case, rng.random(r)))
    flag("email:space", _apply(email_r, ok & draw(_EMAIL_SPACE), _space, rng.random(r)))

    # phone
    land = h_has_land[hh[rp]] & ~moved & (rng.random(r) < _USE_LANDLINE)
    newer = new_phone[rp] & (t > phone_t[rp]) & ~land
    nsn_r = np.where(land, h_land[hh[rp]], np.where(newer, mob1[rp], mob0[rp]))
    sp_r = np.where(land, h_land_sp[hh[rp]], mob_sp[rp])
    junk_phone = draw(_JUNK_PHONE_P)
    flag("phone:landline", land & has_phone & ~junk_phone)
    flag("new_phone", newer & has_phone & ~junk_phone)
    shop = junk_phone & (rng.random(r) < _SHOP_PHONE_SHARE[src])
    for c, pool in enumerate(pools):
        ri = np.flatnonzero(shop & (rc == c))
        nsn_r[ri] = _SHOP_PHONES[pool.code][0]
        sp_r[ri] = _SHOP_PHONES[pool.code][1]
    style = _sample_rows(rng, _STYLE_P, src)
    phone_r = _obj((), r)
    formatted = (has_phone & ~junk_phone) | shop
    for c, pool in enumerate(pools):
        spec = _SPECS[pool.code]
        for s in range(len(_PHONE_STYLES)):
            ri = np.flatnonzero(formatted & (rc == c) & (style == s))
            phone_r[ri] = [
                _format_phone(pool.code, spec.calling_code, spec.trunk, s, v, k)
                for v, k in zip(nsn_r[ri].tolist(), sp_r[ri].tolist(), strict=True)
            ]
    typo = formatted & ~shop & draw(_PHONE_TYPO)
    flag("phone:typo", _apply(phone_r, typo, _swap_digits, rng.random(r)))
    generic = junk_phone & ~shop
    gi = np.flatnonzero(generic)
    pick = rng.choice(len(_JUNK_PHONES), size=gi.size, p=_norm([w for _, w in _JUNK_PHONES]))
    phone_r[gi] = [_JUNK_PHONES[k][0] for k in pick.tolist()]
    flag("junk:phone", generic)
    flag("junk:shop_phone", shop)
    has_phone |= junk_phone

    # birth date
    birth_r = birth[rp]
    flag("birth:swapped", _apply(birth_r, has_birth & draw(_BIRTH_SWAP), _swap_day_month))
    junk_birth = draw(_JUNK_BIRTH_P)
    birth_r[junk_birth] = _JUNK_BIRTH[rng.integers(0, len(_JUNK_BIRTH), int(junk_birth.sum()))]
    flag("junk:birth", junk_birth)
    has_birth |= junk_birth

    # postcodes
    nospace = has_postcode & draw(_POSTCODE_NOSPACE)
    flag("postcode:nospace", _apply(post_r, nospace, lambda s: s.replace(" ", "")))
    zero = has_postcode & draw(_POSTCODE_ZERO)
    flag("postcode:zero", _apply(post_r, zero, lambda s: s[1:] if s[:1] == "0" else s))

    # ids
    account = (src == WEB) | (src == MARKET)
    user_r = _obj((), r)
    user_r[account] = _person_ids(
        rp[account], n, lambda p: [f"U{v:09d}" for v in ((p * 738_919 + user_offset) % 10**9)]
    )
    crm = np.flatnonzero(src == CRM)
    crm_r = _obj((), r)
    crm_offset = int(rng.integers(0, 10**8))
    crm_r[crm] = [f"C{v:08d}" for v in ((np.arange(crm.size) * 738_919 + crm_offset) % 10**8)]

    # ---- shuffle and assemble
    order = rng.permutation(r)
    take = pa.array(order)
    src_o = src[order]
    seq = np.zeros(r, np.int64)
    for s in range(len(SOURCES)):
        where = np.flatnonzero(src_o == s)
        seq[where] = np.arange(1, where.size + 1)
    source_col = pc.take(pa.array(SOURCES), pa.array(src_o))
    record_id = pc.binary_join_element_wise(source_col, pc.cast(pa.array(seq), pa.string()), "-")
    codes = bits * 8 + np.where(has_phone & formatted & ~shop, style + 1, 0)
    uniq, inverse = np.unique(codes[order], return_inverse=True)
    labels = pa.array([_variant_text(int(v)) for v in uniq], pa.string())
    variant = pc.take(labels, pa.array(inverse.astype(np.int64)))

    def col(values: np.ndarray, present: np.ndarray) -> pa.Array:
        return pc.take(pa.array(values, pa.string(), mask=~present), take)

    return pa.table(
        {
            "record_id": record_id,
            "source": source_col,
            "person_id": pa.array(rp[order] + 1, pa.int64()),
            "household_id": pa.array(hh[rp[order]] + 1, pa.int64()),
            "first_name": col(first_r, has_first),
            "last_name": col(last_r, has_last),
            "email": col(email_r, has_email),
            "phone": col(phone_r, has_phone),
            "birth_date": pc.take(
                pa.array(birth_r.astype(np.int32), pa.date32(), mask=~has_birth), take
            ).cast(pa.string()),
            "street": col(street_r, has_address),
            "city": col(city_r, has_address),
            "postcode": col(post_r, has_postcode),
            "country": col(_obj(countries)[rc], has_country),
            "user_id": col(user_r, account),
            "crm_id": col(crm_r, src == CRM),
            "junk": pa.array((bits[order] & _JUNK_BITS) != 0, pa.bool_()),
            "variant": variant,
        }
    )


def _abbrev_records(
    street: np.ndarray, mask: np.ndarray, rc: np.ndarray, countries: tuple[str, ...]
) -> np.ndarray:
    changed = np.zeros(street.size, bool)
    for c, code in enumerate(countries):
        changed |= _apply(street, mask & (rc == c), _abbreviator(code))
    return changed


def _swap_day_month(day: int) -> int:
    """Day and month swapped (days since 1970-01-01), where that is still a date."""
    date = _EPOCH + timedelta(days=day)
    if date.day > 12 or date.day == date.month:
        return day
    return (date.replace(month=date.day, day=date.month) - _EPOCH).days


def _scramble(i: np.ndarray, key: np.int64, bits: int) -> list[int]:
    """A bijection of ``range(2**bits)`` (odd multiplier, xor): distinct opaque ids."""
    mask = (1 << bits) - 1
    v = (i.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15 & mask)) & np.uint64(mask)
    return (v ^ np.uint64(int(key) & mask)).tolist()


def _person_ids(persons: np.ndarray, n: int, make) -> np.ndarray:
    """``make(unique persons)`` -> one id each, spread back over ``persons``."""
    ids = _obj((), n)
    need = np.unique(persons)
    ids[need] = make(need)
    return ids[persons]


def _variant_text(code: int) -> str:
    style, bits = code % 8, code // 8
    tags = [tag for i, tag in enumerate(_TAGS_LIST) if bits >> i & 1]
    if style:
        tags.append("phone:" + _PHONE_STYLES[style - 1])
    return ",".join(tags)


# ------------------------------------------------------------------------------ baseline


_NON_DIGITS = re.compile(r"\D+")


def _phone_keys(phones: list, regions: list) -> list:
    """E.164 with phonenumbers when installed and the number is possible, else the digits.

    Numbers written internationally ("+" or "00", 8 to 15 digits) are taken as they are.
    phonenumbers is asked once per pattern (country, "+" or not, first three digits,
    length): the trunk prefix it strips and the country code it adds are then applied to
    every number of that pattern, which keeps 1,000,000 records to seconds."""
    try:
        import phonenumbers
    except ImportError:  # pragma: no cover - depends on the environment
        phonenumbers = None
    templates: dict[tuple, tuple[str, int] | None] = {}
    out = []
    for text, region in zip(phones, regions, strict=True):
        if text is None:
            out.append(None)
            continue
        text = text.strip().replace("(0)", "")
        plus = text.startswith("+")
        digits = _NON_DIGITS.sub("", text)
        if not digits:
            out.append(None)
            continue
        if not plus and digits.startswith("00") and digits[2:3] != "0":
            plus, digits = True, digits[2:]
        if plus and 8 <= len(digits) <= 15:
            out.append("+" + digits)
            continue
        if phonenumbers is None:
            out.append(digits)
            continue
        key = (region, plus, digits[:3], len(digits))
        if key not in templates:
            templates[key] = _phone_template(phonenumbers, plus, digits, region)
        template = templates[key]
        out.append(digits if template is None else template[0] + digits[template[1] :])
    return out


def _phone_template(phonenumbers, plus: bool, digits: str, region: str | None):
    """(``+`` and country code, digits to strip) as phonenumbers parses this number, or
    None where it is not a possible number."""
    try:
        number = phonenumbers.parse(("+" if plus else "") + digits, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    code = f"+{number.country_code}"
    nsn = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[len(code) :]
    strip = len(digits) - len(nsn)
    if strip < 0 or digits[strip:] != nsn:
        return None
    return code, strip


def _email_norm(email: str | None) -> str | None:
    """Trimmed, lower case, without a +tag. Dots are kept: that rule is per provider."""
    if email is None:
        return None
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or not domain:
        return None
    return local.split("+", 1)[0] + "@" + domain


def _components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes joined by the edges (left[i], right[i])."""
    try:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
    except ImportError:  # pragma: no cover - depends on the environment
        parent = list(range(n))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for a, b in zip(left.tolist(), right.tolist(), strict=True):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        roots = np.array([find(x) for x in range(n)], np.int64)
        return np.unique(roots, return_inverse=True)[1].astype(np.int64)
    graph = coo_matrix((np.ones(left.size, np.int8), (left, right)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def exact_stitch_baseline(
    records: pa.Table, *, max_records_per_value: int | None = None
) -> pa.Table:
    """Exact stitching: records sharing a normalised e-mail (trimmed, lower case, +tag
    dropped) or phone (E.164 by ``phonenumbers`` with the record's country as the region,
    else its digits) are one person; clusters are the connected components.

    Junk values are not filtered, as in a naive set-up, unless ``max_records_per_value`` is
    given: then a value found on more records than that links nothing (the crudest
    frequency-based junk filter). Returns ``record_id`` and ``cluster_id`` (int64)."""
    r = records.num_rows
    emails = [_email_norm(e) for e in records.column("email").to_pylist()]
    phones = _phone_keys(records.column("phone").to_pylist(), records.column("country").to_pylist())
    keys = pa.array(
        [None if e is None else "e:" + e for e in emails]
        + [None if p is None else "p:" + p for p in phones],
        pa.string(),
    ).dictionary_encode()
    idx = pc.fill_null(keys.indices, -1).to_numpy().astype(np.int64)
    valid = idx >= 0
    if max_records_per_value is not None:
        counts = np.bincount(idx[valid], minlength=len(keys.dictionary))
        valid &= counts[np.maximum(idx, 0)] <= max_records_per_value
    rec = np.concatenate([np.arange(r), np.arange(r)])[valid]
    key_node = r + idx[valid]
    labels = _components(r + len(keys.dictionary), rec, key_node)[:r]
    cluster = np.unique(labels, return_inverse=True)[1].astype(np.int64)
    return pa.table({"record_id": records.column("record_id"), "cluster_id": pa.array(cluster)})


# ------------------------------------------------------------------------------- scoring


def _pairs(counts: np.ndarray) -> int:
    c = counts.astype(np.int64)
    return int((c * (c - 1) // 2).sum())


def pairwise_scores(clusters: pa.Table, truth: pa.Table) -> dict:
    """Score a clustering (``record_id``, ``cluster_id``) against the truth (``record_id``,
    ``person_id``, e.g. the generated table).

    * ``precision``, ``recall``, ``f1``: over record pairs (a pair is predicted when both
      records share a cluster, true when they share a person). With no predicted (true)
      pairs, precision (recall) is 1.
    * ``bcubed_precision``, ``bcubed_recall``, ``bcubed_f1``: B-cubed, averaged over
      records (for each record, the share of its cluster that is its person, and of its
      person that is in its cluster).
    * ``cluster_precision``, ``cluster_recall``, ``cluster_f1``: exact clusters, the
      share of predicted clusters that are exactly one person's records, and of people
      whose records form exactly one predicted cluster.
    * counts: ``records``, ``clusters``, ``persons``, ``true_pairs``, ``predicted_pairs``,
      ``true_positive_pairs``.

    Truth records missing from ``clusters`` count as singletons; a clustered record that is
    not in ``truth`` is an error.
    """
    truth_ids = truth.column("record_id")
    pos = pc.index_in(clusters.column("record_id"), value_set=truth_ids)
    if pos.null_count:
        raise ValueError(f"{pos.null_count} clustered records are not in the truth")
    r = truth.num_rows
    person = np.unique(truth.column("person_id").to_numpy(), return_inverse=True)[1]
    cluster = np.full(r, -1, np.int64)
    given = np.unique(clusters.column("cluster_id").to_numpy(), return_inverse=True)[1]
    cluster[pos.to_numpy()] = given
    missing = cluster < 0
    cluster[missing] = given.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    cluster = np.unique(cluster, return_inverse=True)[1].astype(np.int64)
    person = person.astype(np.int64)
    nc, npers = int(cluster.max(initial=-1)) + 1, int(person.max(initial=-1)) + 1
    c_size = np.bincount(cluster, minlength=nc)
    p_size = np.bincount(person, minlength=npers)
    cell, cell_inv, cell_n = np.unique(
        cluster * max(npers, 1) + person, return_inverse=True, return_counts=True
    )
    tp, pred, true = _pairs(cell_n), _pairs(c_size), _pairs(p_size)
    precision = tp / pred if pred else 1.0
    recall = tp / true if true else 1.0
    n_rec = cell_n[cell_inv]
    b_p = float((n_rec / c_size[cluster]).mean()) if r else 1.0
    b_r = float((n_rec / p_size[person]).mean()) if r else 1.0
    cell_c, cell_p = cell // max(npers, 1), cell % max(npers, 1)
    exact = int(((cell_n == c_size[cell_c]) & (cell_n == p_size[cell_p])).sum())
    c_prec = exact / nc if nc else 1.0
    c_rec = exact / npers if npers else 1.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "bcubed_precision": b_p,
        "bcubed_recall": b_r,
        "bcubed_f1": _f1(b_p, b_r),
        "cluster_precision": c_prec,
        "cluster_recall": c_rec,
        "cluster_f1": _f1(c_prec, c_rec),
        "records": r,
        "clusters": nc,
        "persons": npers,
        "true_pairs": true,
        "predicted_pairs": pred,
        "true_positive_pairs": tp,
    }


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0
