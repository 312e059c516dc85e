"""Seeded generator of a believable e-commerce business, "Harbour & Pine".

The shop sells outdoor clothing and homeware online (web shop and mobile app) and in nine
stores in seven countries. ``generate_demo`` returns what its systems would have sent to a
CDP over the 180 days before ``now``:

* ``web-shop`` / ``mobile-app``: analytics.js and mobile-SDK calls (page, screen, track,
  identify). Visitors browse anonymously, then sign up or log in (identify with userId and
  the device's anonymousId) and act as known users. People use several devices; some
  devices never log in, some people never identify, a few households share a computer
  (one anonymousId, two userIds). Online returns ("Order Refunded") are sent server-side
  through the web-shop source.
* ``pos``: the tills, connected for the last 75 days. A scanned loyalty card is the userId;
  a customer looked up by phone gets a per-receipt anonymousId and ``context.traits.phone``
  as the cashier typed it. Sales before the go-live exist only in ``pos_rows`` (a till
  export), so loading both never counts a sale twice.
* ``email``: the email service provider (sends, opens, clicks, unsubscribes). Customers by
  userId; newsletter-only and store-only subscribers by the ESP's subscriber id as
  anonymousId. Every email message carries ``context.traits.email``.
* ``support``: the help desk. Synced customers by userId; the others by the desk's
  requester id as anonymousId, with the contact details they gave in ``context.traits``.
* ``crm``: sends no messages; ``crm_rows`` is its export, with the spellings a CRM
  accumulates (case, accents, nicknames, swapped names, phone and e-mail formats).

Everything comes from ``random.Random(seed)`` and seeded Faker instances. No random draw
depends on ``now`` (times are offsets from the start of the window), so runs with the same
seed and size differ only in their dates, and their messageIds are the same.

Contact data is made safe to load anywhere: e-mail domains are reserved (RFC 2606), IPs
come from documentation and private ranges, GB and US phone numbers from the ranges
reserved for drama (07700 900xxx, 020 7946 0xxx, 555-01xx).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import importlib
import itertools
import random
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from faker import Generator

__all__ = ["DemoData", "DemoSource", "generate_demo", "write_csv"]

SHOP_NAME = "Harbour & Pine"
SHOP_URL = "https://shop.example.com"
APP_SCHEME = "harbourpine://"

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WINDOW_DAYS = 180
HORIZON = WINDOW_DAYS * DAY  # offsets are ms after the window start; all are < HORIZON
POS_GO_LIVE = (WINDOW_DAYS - 75) * DAY  # tills send live events from here on


@dataclass(frozen=True)
class DemoSource:
    """A source that sends data to Onefold: its name (write key label) and kind."""

    name: str
    type: str


@dataclass
class DemoData:
    """Everything the demo business produced.

    ``messages`` maps each source name to tracking-API messages in time order (the ``crm``
    source has none; its data is ``crm_rows``).

    ``crm_rows`` (all values strings): one row per CRM record. ``crm_id`` is the CRM's key;
    ``customer_number`` is the web userId when the CRM knows it (about half the online
    customers), else empty; ``loyalty_card`` is the till's userId. Columns are snake_case
    (``first_name``, ``postal_code``, ``birth_date``...), so a profiles import maps them to
    traits.

    ``pos_rows`` (all values strings): one row per till receipt before the POS go-live,
    time ordered. ``event`` is "Order Completed" or "Order Refunded" (then ``order_id`` is
    the refunded sale and ``receipt_id`` the refund's own receipt). Exactly one of
    ``loyalty_card`` (the userId) and ``anonymous_id`` (``pos-<receipt>``, the same
    convention as the live till messages) is set; the latter rows carry
    ``customer_phone`` as typed. Line items are pipe-joined (``product_ids``, ``skus``,
    ``quantities``).

    ``people`` is the ground truth linking every identifier back to one person; it is for
    tests and docs, not for loading. ``catalog`` is the product catalogue (one flat row
    per product, prices and costs in EUR, GBP and USD).
    """

    sources: list[DemoSource]
    messages: dict[str, list[dict]]
    crm_rows: list[dict]
    pos_rows: list[dict]
    people: list[dict]
    catalog: list[dict] = field(default_factory=list)


SOURCES: tuple[DemoSource, ...] = (
    DemoSource("web-shop", "web"),
    DemoSource("mobile-app", "app"),
    DemoSource("pos", "pos"),
    DemoSource("email", "email"),
    DemoSource("support", "support"),
    DemoSource("crm", "crm"),
)

# --------------------------------------------------------------------------- reference data


@dataclass(frozen=True)
class _Country:
    code: str
    faker_locale: str
    language: str
    locale: str
    currency: str
    calling_code: str
    vat: float  # EU prices include VAT; US sales tax is added on top
    weight: float
    # (city, postcode pattern, IANA zone, UTC offset in winter, US state, US area code)
    cities: tuple[tuple[str, str, str, int, str, str], ...]


def _eu(city: str, pattern: str, zone: str, offset: int) -> tuple[str, str, str, int, str, str]:
    return (city, pattern, zone, offset, "", "")


_COUNTRIES: tuple[_Country, ...] = (
    _Country(
        "ES",
        "es_ES",
        "es",
        "es-ES",
        "EUR",
        "34",
        0.21,
        0.20,
        tuple(
            _eu(c, p, "Europe/Madrid", 1)
            for c, p in (
                ("Madrid", "280##"),
                ("Barcelona", "080##"),
                ("Valencia", "460##"),
                ("Sevilla", "410##"),
                ("Zaragoza", "500##"),
                ("Málaga", "290##"),
                ("Bilbao", "480##"),
                ("Córdoba", "140##"),
                ("Valladolid", "470##"),
                ("A Coruña", "150##"),
                ("Granada", "180##"),
                ("Palma", "070##"),
            )
        ),
    ),
    _Country(
        "DE",
        "de_DE",
        "de",
        "de-DE",
        "EUR",
        "49",
        0.19,
        0.20,
        tuple(
            _eu(c, p, "Europe/Berlin", 1)
            for c, p in (
                ("Berlin", "10###"),
                ("Hamburg", "20###"),
                ("München", "80###"),
                ("Köln", "50###"),
                ("Frankfurt am Main", "60###"),
                ("Stuttgart", "70###"),
                ("Düsseldorf", "40###"),
                ("Leipzig", "04###"),
                ("Dortmund", "44###"),
                ("Bremen", "28###"),
                ("Dresden", "01###"),
                ("Hannover", "30###"),
                ("Nürnberg", "90###"),
            )
        ),
    ),
    _Country(
        "FR",
        "fr_FR",
        "fr",
        "fr-FR",
        "EUR",
        "33",
        0.20,
        0.15,
        tuple(
            _eu(c, p, "Europe/Paris", 1)
            for c, p in (
                ("Paris", "750##"),
                ("Marseille", "130##"),
                ("Lyon", "6900#"),
                ("Toulouse", "310##"),
                ("Nice", "060##"),
                ("Nantes", "440##"),
                ("Strasbourg", "670##"),
                ("Montpellier", "340##"),
                ("Bordeaux", "330##"),
                ("Lille", "590##"),
                ("Rennes", "350##"),
            )
        ),
    ),
    _Country(
        "GB",
        "en_GB",
        "en",
        "en-GB",
        "GBP",
        "44",
        0.20,
        0.14,
        tuple(
            _eu(c, p, "Europe/London", 0)
            for c, p in (
                ("London", "SW# #??"),
                ("London", "E# #??"),
                ("London", "N## #??"),
                ("Manchester", "M## #??"),
                ("Birmingham", "B## #??"),
                ("Leeds", "LS# #??"),
                ("Glasgow", "G## #??"),
                ("Edinburgh", "EH# #??"),
                ("Liverpool", "L## #??"),
                ("Bristol", "BS# #??"),
                ("Sheffield", "S## #??"),
                ("Cardiff", "CF## #??"),
            )
        ),
    ),
    _Country(
        "IT",
        "it_IT",
        "it",
        "it-IT",
        "EUR",
        "39",
        0.22,
        0.10,
        tuple(
            _eu(c, p, "Europe/Rome", 1)
            for c, p in (
                ("Roma", "001##"),
                ("Milano", "201##"),
                ("Napoli", "801##"),
                ("Torino", "101##"),
                ("Palermo", "901##"),
                ("Genova", "161##"),
                ("Bologna", "401##"),
                ("Firenze", "501##"),
                ("Bari", "701##"),
                ("Verona", "371##"),
            )
        ),
    ),
    _Country(
        "NL",
        "nl_NL",
        "nl",
        "nl-NL",
        "EUR",
        "31",
        0.21,
        0.08,
        tuple(
            _eu(c, p, "Europe/Amsterdam", 1)
            for c, p in (
                ("Amsterdam", "10## ??"),
                ("Rotterdam", "30## ??"),
                ("Den Haag", "25## ??"),
                ("Utrecht", "35## ??"),
                ("Eindhoven", "56## ??"),
                ("Groningen", "97## ??"),
                ("Tilburg", "50## ??"),
                ("Breda", "48## ??"),
                ("Nijmegen", "65## ??"),
            )
        ),
    ),
    _Country(
        "US",
        "en_US",
        "en",
        "en-US",
        "USD",
        "1",
        0.08875,
        0.13,
        (
            ("New York", "100##", "America/New_York", -5, "NY", "212"),
            ("Brooklyn", "112##", "America/New_York", -5, "NY", "718"),
            ("Boston", "021##", "America/New_York", -5, "MA", "617"),
            ("Philadelphia", "191##", "America/New_York", -5, "PA", "215"),
            ("Atlanta", "303##", "America/New_York", -5, "GA", "404"),
            ("Miami", "331##", "America/New_York", -5, "FL", "305"),
            ("Chicago", "606##", "America/Chicago", -6, "IL", "312"),
            ("Austin", "787##", "America/Chicago", -6, "TX", "512"),
            ("Dallas", "752##", "America/Chicago", -6, "TX", "214"),
            ("Denver", "802##", "America/Denver", -7, "CO", "303"),
            ("Phoenix", "850##", "America/Phoenix", -7, "AZ", "602"),
            ("Los Angeles", "900##", "America/Los_Angeles", -8, "CA", "213"),
            ("San Diego", "921##", "America/Los_Angeles", -8, "CA", "619"),
            ("Seattle", "981##", "America/Los_Angeles", -8, "WA", "206"),
            ("Portland", "972##", "America/Los_Angeles", -8, "OR", "503"),
        ),
    ),
)
_COUNTRY = {c.code: c for c in _COUNTRIES}

# (store_id, name, country, city index into the country's cities)
_STORES: tuple[tuple[str, str, str, int], ...] = (
    ("ST-MAD-01", "Madrid Gran Vía", "ES", 0),
    ("ST-BCN-01", "Barcelona Passeig de Gràcia", "ES", 1),
    ("ST-BER-01", "Berlin Mitte", "DE", 0),
    ("ST-MUC-01", "München Marienplatz", "DE", 2),
    ("ST-PAR-01", "Paris Le Marais", "FR", 0),
    ("ST-LON-01", "London Covent Garden", "GB", 0),
    ("ST-MIL-01", "Milano Brera", "IT", 1),
    ("ST-AMS-01", "Amsterdam De Pijp", "NL", 0),
    ("ST-NYC-01", "New York SoHo", "US", 0),
)

_FX = {"EUR": 1.0, "GBP": 0.86, "USD": 1.09}

# (category, sku code, product nouns, EUR price range)
_CATEGORIES: tuple[tuple[str, str, tuple[str, ...], tuple[int, int]], ...] = (
    (
        "Jackets",
        "JKT",
        ("Rain Jacket", "Down Jacket", "Softshell Jacket", "Parka", "Fleece Jacket", "Windbreaker"),
        (69, 279),
    ),
    (
        "Tops",
        "TOP",
        ("Merino T-Shirt", "Linen Shirt", "Hoodie", "Crew Sweater", "Polo Shirt", "Flannel Shirt"),
        (19, 99),
    ),
    (
        "Trousers",
        "TRS",
        ("Chinos", "Hiking Trousers", "Slim Jeans", "Joggers", "Cargo Shorts"),
        (35, 129),
    ),
    ("Sneakers", "SNK", ("Trail Runner", "Court Sneaker", "Knit Runner", "Canvas Low"), (59, 169)),
    ("Boots", "BTS", ("Hiking Boot", "Chelsea Boot", "Winter Boot", "Rain Boot"), (79, 249)),
    (
        "Backpacks",
        "BAG",
        ("Daypack 20L", "Travel Pack 40L", "Roll-top Pack 25L", "Sling Bag", "Duffel 60L"),
        (35, 189),
    ),
    (
        "Camping",
        "CMP",
        ("2-Person Tent", "Sleeping Bag", "Camp Stove", "Headlamp", "Camp Chair"),
        (24, 399),
    ),
    (
        "Kitchen",
        "KIT",
        ("Enamel Mug", "Chef Knife", "Cast Iron Pan", "French Press", "Pour-over Set"),
        (12, 129),
    ),
    (
        "Bedding",
        "BED",
        ("Linen Duvet Cover", "Wool Blanket", "Pillow Set", "Flannel Sheets"),
        (39, 189),
    ),
    (
        "Accessories",
        "ACC",
        ("Beanie", "Wool Socks 3-Pack", "Leather Belt", "Sunglasses", "Water Bottle", "Cap"),
        (12, 89),
    ),
)
_BRANDS = (
    ("Northwind", "NW"),
    ("Larkspur", "LK"),
    ("Fjellrev", "FJ"),
    ("Solano", "SO"),
    ("Brightwater", "BW"),
    ("Kestrel & Co", "KC"),
    ("Oakhaven", "OH"),
    ("Marisol", "MS"),
)
_MODELS = (
    "Storm",
    "Ridge",
    "Coast",
    "Alder",
    "Fjord",
    "Nova",
    "Summit",
    "Harbour",
    "Drift",
    "Ember",
    "Cirrus",
    "Basalt",
    "Juniper",
    "Tundra",
)
_COLORS = ("Black", "Navy", "Olive", "Sand", "Rust", "Grey", "Forest", "Stone")
_PRODUCTS_PER_CATEGORY = 12

_SEARCHES = {
    "en": {
        "Jackets": "rain jacket",
        "Tops": "merino",
        "Trousers": "hiking trousers",
        "Sneakers": "trail shoes",
        "Boots": "boots",
        "Backpacks": "backpack",
        "Camping": "tent",
        "Kitchen": "cast iron",
        "Bedding": "duvet cover",
        "Accessories": "beanie",
    },
    "es": {
        "Jackets": "chaqueta impermeable",
        "Tops": "camiseta merino",
        "Trousers": "pantalón montaña",
        "Sneakers": "zapatillas trail",
        "Boots": "botas",
        "Backpacks": "mochila",
        "Camping": "tienda de campaña",
        "Kitchen": "sartén",
        "Bedding": "funda nórdica",
        "Accessories": "gorro",
    },
    "de": {
        "Jackets": "regenjacke",
        "Tops": "merino shirt",
        "Trousers": "wanderhose",
        "Sneakers": "laufschuhe",
        "Boots": "wanderschuhe",
        "Backpacks": "rucksack",
        "Camping": "zelt",
        "Kitchen": "gusseisenpfanne",
        "Bedding": "bettwäsche leinen",
        "Accessories": "mütze",
    },
    "fr": {
        "Jackets": "veste de pluie",
        "Tops": "t-shirt mérinos",
        "Trousers": "pantalon randonnée",
        "Sneakers": "baskets",
        "Boots": "bottines",
        "Backpacks": "sac à dos",
        "Camping": "tente",
        "Kitchen": "poêle fonte",
        "Bedding": "housse de couette",
        "Accessories": "bonnet",
    },
    "it": {
        "Jackets": "giacca impermeabile",
        "Tops": "maglia merino",
        "Trousers": "pantaloni trekking",
        "Sneakers": "scarpe running",
        "Boots": "scarponi",
        "Backpacks": "zaino",
        "Camping": "tenda",
        "Kitchen": "padella ghisa",
        "Bedding": "copripiumino",
        "Accessories": "berretto",
    },
    "nl": {
        "Jackets": "regenjas",
        "Tops": "merino shirt",
        "Trousers": "wandelbroek",
        "Sneakers": "hardloopschoenen",
        "Boots": "wandelschoenen",
        "Backpacks": "rugzak",
        "Camping": "tent",
        "Kitchen": "gietijzeren pan",
        "Bedding": "dekbedovertrek",
        "Accessories": "muts",
    },
}

# Formal first names, the nicknames people put on forms instead, and the gender the name
# pools file them under. They are added to the Faker name pools so nicknames occur.
_NICKNAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    # en
    "Robert": ("m", ("Bob", "Rob")),
    "William": ("m", ("Bill", "Will")),
    "Elizabeth": ("f", ("Liz", "Beth")),
    "Katherine": ("f", ("Kate", "Katie")),
    "Margaret": ("f", ("Maggie", "Peggy")),
    "Michael": ("m", ("Mike",)),
    "Christopher": ("m", ("Chris",)),
    "Jennifer": ("f", ("Jen", "Jenny")),
    "Thomas": ("m", ("Tom",)),
    "James": ("m", ("Jim", "Jamie")),
    "Joseph": ("m", ("Joe",)),
    "Anthony": ("m", ("Tony",)),
    "Alexander": ("m", ("Alex",)),
    "Rebecca": ("f", ("Becky",)),
    "Victoria": ("f", ("Vicky",)),
    "Nicholas": ("m", ("Nick",)),
    "Samantha": ("f", ("Sam",)),
    # es
    "José": ("m", ("Pepe",)),
    "Francisco": ("m", ("Paco", "Curro")),
    "Manuel": ("m", ("Manolo",)),
    "Ignacio": ("m", ("Nacho",)),
    "Dolores": ("f", ("Lola",)),
    "Concepción": ("f", ("Concha",)),
    "Rosario": ("f", ("Charo",)),
    "Mercedes": ("f", ("Merche",)),
    "Enrique": ("m", ("Quique",)),
    "Francisca": ("f", ("Paqui",)),
    "Guadalupe": ("f", ("Lupe",)),
    "Jesús": ("m", ("Chus",)),
    # de
    "Johannes": ("m", ("Hannes", "Jan")),
    "Katharina": ("f", ("Kathi", "Katja")),
    "Stefanie": ("f", ("Steffi",)),
    "Franziska": ("f", ("Franzi",)),
    "Maximilian": ("m", ("Max",)),
    "Andreas": ("m", ("Andi",)),
    "Susanne": ("f", ("Susi",)),
    "Gabriele": ("f", ("Gabi",)),
    "Wolfgang": ("m", ("Wolf",)),
    # fr
    "Nicolas": ("m", ("Nico",)),
    "Frédéric": ("m", ("Fred",)),
    "Christophe": ("m", ("Chris",)),
    "Isabelle": ("f", ("Isa",)),
    "Stéphanie": ("f", ("Steph",)),
    "Valérie": ("f", ("Val",)),
    # it
    "Giuseppe": ("m", ("Beppe", "Peppe")),
    "Giovanni": ("m", ("Gianni",)),
    "Alessandro": ("m", ("Sandro", "Ale")),
    "Vincenzo": ("m", ("Enzo",)),
    "Federica": ("f", ("Fede",)),
    "Salvatore": ("m", ("Totò",)),
    # nl
    "Cornelis": ("m", ("Kees",)),
    "Hendrik": ("m", ("Henk",)),
    "Petrus": ("m", ("Piet",)),
    "Jacobus": ("m", ("Jaap",)),
    "Willem": ("m", ("Wim",)),
    "Johanna": ("f", ("Anneke",)),
}
_NICK_BY_COUNTRY = {
    "GB": (
        "Robert",
        "William",
        "Elizabeth",
        "Katherine",
        "Margaret",
        "Michael",
        "Christopher",
        "Thomas",
        "James",
        "Rebecca",
        "Victoria",
        "Nicholas",
        "Samantha",
    ),
    "US": (
        "Robert",
        "William",
        "Elizabeth",
        "Katherine",
        "Michael",
        "Christopher",
        "Jennifer",
        "Joseph",
        "Anthony",
        "Alexander",
        "Nicholas",
        "Samantha",
    ),
    "ES": (
        "José",
        "Francisco",
        "Manuel",
        "Ignacio",
        "Dolores",
        "Concepción",
        "Rosario",
        "Mercedes",
        "Enrique",
        "Francisca",
        "Guadalupe",
        "Jesús",
    ),
    "DE": (
        "Johannes",
        "Katharina",
        "Stefanie",
        "Franziska",
        "Maximilian",
        "Andreas",
        "Susanne",
        "Gabriele",
        "Wolfgang",
        "Alexander",
        "Thomas",
        "Michael",
    ),
    "FR": ("Nicolas", "Frédéric", "Christophe", "Isabelle", "Stéphanie", "Valérie"),
    "IT": ("Giuseppe", "Giovanni", "Alessandro", "Vincenzo", "Federica", "Salvatore"),
    "NL": ("Cornelis", "Hendrik", "Petrus", "Jacobus", "Willem", "Johanna", "Johannes"),
}

_EMAIL_DOMAINS = (
    "example.com",
    "example.net",
    "example.org",
    "mail.example",
    "inbox.example",
    "post.example",
)
_EMAIL_DOMAIN_CW = tuple(itertools.accumulate((35, 20, 15, 12, 10, 8)))

_WEB_LIB = {"name": "analytics.js", "version": "next-1.84.3"}
_IOS_LIB = {"name": "analytics-ios", "version": "4.1.8"}
_ANDROID_LIB = {"name": "analytics-android", "version": "4.11.3"}
_SERVER_LIB = {"name": "analytics-python", "version": "2.4.0"}
_SERVER_UA = "analytics-python/2.4.0"
_SHOP_SERVER_IP = "203.0.113.10"
_ESP_IP = "198.51.100.25"
_DESK_IP = "198.51.100.40"

_DESKTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/{s} Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
)
_MOBILE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/{s} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Mobile Safari/537.36",
)
_TABLET_UA = (
    "Mozilla/5.0 (iPad; CPU OS {i} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/{s} Mobile/15E148 Safari/604.1",
)
_IOS_MODELS = (
    ("iPhone14,5", 390, 844),
    ("iPhone15,2", 393, 852),
    ("iPhone15,4", 393, 852),
    ("iPhone16,1", 393, 852),
    ("iPhone16,2", 430, 932),
    ("iPhone13,1", 375, 812),
)
_ANDROID_MODELS = (
    ("Google", "Pixel 8", "AP2A.240805.005"),
    ("samsung", "SM-S911B", "UP1A.231005.007"),
    ("samsung", "SM-A546B", "UP1A.231005.007"),
    ("Xiaomi", "2201117TG", "TKQ1.221114.001"),
    ("OnePlus", "CPH2449", "TP1A.220905.001"),
)
_APP_VERSIONS = (("4.10.2", "4102"), ("4.11.0", "4110"), ("4.11.3", "4113"), ("4.12.0", "4120"))

_HOUR_WEIGHTS = (
    1.0,
    0.5,
    0.3,
    0.2,
    0.2,
    0.3,
    0.8,
    1.5,
    2.5,
    3.0,
    3.0,
    3.2,
    3.5,
    3.2,
    3.0,
    3.0,
    3.2,
    3.6,
    4.2,
    5.0,
    5.5,
    5.0,
    3.5,
    2.0,
)
_HOUR_CW = tuple(itertools.accumulate(_HOUR_WEIGHTS))

_REFERRERS = (
    ("", 40),
    ("https://www.google.com/", 30),
    ("https://www.instagram.com/", 8),
    ("https://www.bing.com/", 5),
    ("https://duckduckgo.com/", 4),
    ("https://www.facebook.com/", 5),
    ("https://www.pinterest.com/", 3),
    ("https://news.example.org/best-rain-jackets", 5),
)
_REFERRER_CW = tuple(itertools.accumulate(w for _, w in _REFERRERS))

_CAMPAIGN_THEMES = (
    (
        "New arrivals",
        {
            "en": "New in: {n} pieces for the season ahead",
            "es": "Novedades: {n} piezas para la nueva temporada",
            "de": "Neu eingetroffen: {n} Teile für die Saison",
            "fr": "Nouveautés : {n} pièces pour la saison",
            "it": "Novità: {n} capi per la nuova stagione",
            "nl": "Nieuw binnen: {n} items voor het seizoen",
        },
    ),
    (
        "Weekend picks",
        {
            "en": "Our {n} favourites this weekend",
            "es": "Nuestros {n} favoritos del finde",
            "de": "Unsere {n} Lieblinge fürs Wochenende",
            "fr": "Nos {n} coups de cœur du week-end",
            "it": "I nostri {n} preferiti del weekend",
            "nl": "Onze {n} favorieten dit weekend",
        },
    ),
    (
        "Members' sale",
        {
            "en": "Members only: up to {n}% off",
            "es": "Solo socios: hasta un {n}% de descuento",
            "de": "Nur für Mitglieder: bis zu {n}% Rabatt",
            "fr": "Réservé aux membres : jusqu'à -{n}%",
            "it": "Solo per i membri: fino al {n}% di sconto",
            "nl": "Alleen voor leden: tot {n}% korting",
        },
    ),
    (
        "Outdoor guide",
        {
            "en": "{n} trails worth the early start",
            "es": "{n} rutas que merecen el madrugón",
            "de": "{n} Touren, für die sich das frühe Aufstehen lohnt",
            "fr": "{n} randonnées qui valent le réveil matinal",
            "it": "{n} sentieri per cui vale la sveglia presto",
            "nl": "{n} routes die het vroege opstaan waard zijn",
        },
    ),
    (
        "Back in stock",
        {
            "en": "Back in stock: {n} bestsellers",
            "es": "De nuevo disponibles: {n} superventas",
            "de": "Wieder da: {n} Bestseller",
            "fr": "De retour : {n} best-sellers",
            "it": "Di nuovo disponibili: {n} bestseller",
            "nl": "Weer op voorraad: {n} bestsellers",
        },
    ),
)
_ABANDONED = (
    "cmp_abandoned_cart",
    "Abandoned cart reminder",
    {
        "en": "You left something in your basket",
        "es": "Te has dejado algo en la cesta",
        "de": "Du hast etwas im Warenkorb vergessen",
        "fr": "Vous avez oublié quelque chose",
        "it": "Hai dimenticato qualcosa nel carrello",
        "nl": "Je winkelmand wacht op je",
    },
)

_SUPPORT_TOPICS = (
    "delivery_status",
    "returns",
    "payment",
    "product_question",
    "sizing",
    "damaged_item",
    "account_access",
    "loyalty_card",
)
_SUPPORT_SUBJECTS = {
    "delivery_status": "Where is my order?",
    "returns": "How do I return an item?",
    "payment": "I was charged twice",
    "product_question": "Question about a product",
    "sizing": "Which size should I take?",
    "damaged_item": "Item arrived damaged",
    "account_access": "Cannot log in to my account",
    "loyalty_card": "Points missing on my card",
}
_RETURN_REASONS = (
    "size_too_small",
    "size_too_large",
    "damaged",
    "not_as_described",
    "changed_mind",
    "late_delivery",
)
_COUPONS = ("WELCOME10", "MEMBERS10", "SPRING15", "FREESHIP")

_FOLD = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "Ae",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "Oe",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
    }
)
_DE_TRANSLIT = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"}
)
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def _fold(text: str) -> str:
    """Strip accents and ligatures ("Muñoz" -> "Munoz", "Groß" -> "Gross")."""
    text = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def _slug(text: str) -> str:
    return "".join(ch for ch in _fold(text).lower() if ch.isascii() and ch.isalnum())


def _num(rng: random.Random, digits: int) -> str:
    return f"{rng.randrange(10**digits):0{digits}d}"


def _pattern(rng: random.Random, pattern: str) -> str:
    """Fill a postcode pattern: '#' is a digit, '?' an upper-case letter."""
    return "".join(
        str(rng.randrange(10)) if ch == "#" else rng.choice(_UPPER) if ch == "?" else ch
        for ch in pattern
    )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ean13(body12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body12))
    return body12 + str((10 - total % 10) % 10)


_DE_MOBILE = (
    "151",
    "152",
    "157",
    "160",
    "162",
    "170",
    "171",
    "172",
    "173",
    "174",
    "175",
    "176",
    "177",
    "178",
    "179",
)
_IT_MOBILE = (
    "320",
    "328",
    "329",
    "333",
    "338",
    "339",
    "340",
    "347",
    "348",
    "349",
    "366",
    "380",
    "388",
    "392",
)
_GB_AREAS = ("113", "114", "115", "116", "117", "118", "121", "131", "141", "151", "161")


def _phone(rng: random.Random, country: str, area: str, wide: bool) -> tuple[str, str]:
    """A mobile-style phone number as (E.164, national format as people write it).

    GB and US numbers come from the ranges reserved for fiction unless ``wide`` (used only
    once those small ranges are crowded).
    """
    if country == "ES":
        d = rng.choice("67") + _num(rng, 8)
        return "+34" + d, f"{d[:3]} {d[3:5]} {d[5:7]} {d[7:]}"
    if country == "DE":
        pre, rest = rng.choice(_DE_MOBILE), _num(rng, rng.choice((7, 8)))
        return "+49" + pre + rest, f"0{pre} {rest}"
    if country == "FR":
        d = rng.choice("67") + _num(rng, 8)
        return "+33" + d, "0" + d[0] + " " + " ".join(d[i : i + 2] for i in range(1, 9, 2))
    if country == "GB":
        if wide:
            sub = "77009" + _num(rng, 5)
            return "+44" + sub, f"0{sub[:4]} {sub[4:]}"
        if rng.random() < 0.7:
            sub = "7700900" + _num(rng, 3)
            return "+44" + sub, f"0{sub[:4]} {sub[4:]}"
        if rng.random() < 0.4:
            local = "79460" + _num(rng, 3)
            return "+4420" + local, f"020 {local[:4]} {local[4:]}"
        gb_area = rng.choice(_GB_AREAS)
        local = "4960" + _num(rng, 3)
        return "+44" + gb_area + local, f"0{gb_area} {local[:3]} {local[3:]}"
    if country == "IT":
        d = rng.choice(_IT_MOBILE) + _num(rng, 7)
        return "+39" + d, f"{d[:3]} {d[3:6]} {d[6:]}"
    if country == "NL":
        d = "6" + _num(rng, 8)
        return "+31" + d, f"06-{d[1:]}"
    line = _num(rng, 4) if wide else "01" + _num(rng, 2)
    return f"+1{area}555{line}", f"({area}) 555-{line}"


def _phone_formats(country: str, e164: str, national: str) -> dict[str, str]:
    """The ways one number gets written on forms, CRMs and tills."""
    code = _COUNTRY[country].calling_code
    subscriber = e164[1 + len(code) :]
    no_trunk = national[1:] if national.startswith("0") else national
    no_trunk = no_trunk.replace("-", " ").replace("(", "").replace(")", "")
    formats = {
        "e164": e164,
        "national": national,
        "national_digits": "".join(ch for ch in national if ch.isdigit()),
        "intl_spaced": f"+{code} {no_trunk}",
        "intl_00": f"00{code}{subscriber}",
    }
    if country == "GB":
        formats["intl_trunk"] = f"+44 (0){no_trunk}"
    return formats


# ------------------------------------------------------------------------------ model


@dataclass(frozen=True, slots=True, eq=False)  # identity hash: used as dict keys
class _Product:
    product_id: str
    sku: str
    name: str
    category: str
    brand: str
    variant: str
    price: dict[str, float]
    cost: dict[str, float]
    slug: str


@dataclass(slots=True)
class _Device:
    anon_id: str
    kind: str  # "web" or "app"
    form: str  # "desktop", "mobile", "tablet"
    ctx: dict
    app_version: tuple[str, str] | None = None
    never_login: bool = False
    shared: bool = False
    logged_in: str | None = None
    installed: bool = False
    used: bool = False  # sent at least one message


@dataclass(slots=True)
class _Person:
    pid: str
    kind: str  # online | subscriber | anonymous | store | crm_only
    country: _Country
    city: tuple[str, str, str, int, str, str]
    locale: str
    language: str
    first: str
    last: str
    email: str
    new_email: str | None
    email_changed_at: int
    phone: str  # E.164
    phone_national: str
    web_phone: str | None  # how the person types it online, or None if not given
    birthday: str
    shares_birthday: bool
    address: dict
    home_ip: str
    engagement: float
    fav_categories: tuple[str, str]
    user_id: str | None = None
    devices: list[_Device] = field(default_factory=list)
    signup_at: int = HORIZON
    subscribed_at: int = HORIZON
    opt_in: bool = False
    esp_id: str | None = None
    unsubscribed_at: int = HORIZON
    store: tuple[str, str, str, int] | None = None
    pos_ident: str | None = None  # "card" or "phone"
    loyalty_card: str | None = None
    card_issued_at: int = HORIZON
    card_linked: bool = False
    store_visits: list[int] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)
    support_id: str | None = None
    support_synced: bool = False
    pos_anon_ids: list[str] = field(default_factory=list)
    crm_records: list[dict] = field(default_factory=list)
    flags: dict = field(default_factory=dict)
    busy_until: int = -HORIZON  # end of the person's last visit: visits never overlap

    @property
    def tz(self) -> str:
        return self.city[2]

    @property
    def offset(self) -> int:
        return self.city[3]

    @property
    def currency(self) -> str:
        return self.country.currency

    def email_at(self, t: int) -> str:
        if self.new_email is not None and t >= self.email_changed_at:
            return self.new_email
        return self.email


# ------------------------------------------------------------------------------ builder


class _World:
    """Holds the random state and the output while the business is simulated."""

    def __init__(self, seed: int, customers: int, base: datetime) -> None:
        self.seed = seed
        self.customers = customers
        self.base = base.replace(tzinfo=None)  # naive UTC: isoformat() then has no offset
        self.rng = random.Random(seed)
        self.random = self.rng.random
        self.day_prefix: dict[int, str] = {}
        self.counter = 0
        self.out: dict[str, list[tuple[int, int, dict]]] = {s.name: [] for s in SOURCES}
        self.pos_rows: list[tuple[int, int, dict]] = []
        self.used_ids: set[str] = set()
        self.used_emails: set[str] = set()
        self.used_phones: set[str] = set()
        self.order_seq = 100_000 + self.rng.randrange(50_000)
        self.cart_seq = 0
        self.ticket_seq = 40_000 + self.rng.randrange(10_000)
        self.receipt_seq = {s[0]: 10_000 + self.rng.randrange(5_000) for s in _STORES}
        self._build_catalog()
        self._build_name_pools()
        self._build_campaigns()

    # ---------------------------------------------------------------- setup

    def _build_catalog(self) -> None:
        rng = self.rng
        self.products: list[_Product] = []
        self.by_category: dict[str, list[_Product]] = {}
        used: set[str] = set()
        pid = 10_000
        for category, code, nouns, (lo, hi) in _CATEGORIES:
            items: list[_Product] = []
            while len(items) < _PRODUCTS_PER_CATEGORY:
                name = f"{rng.choice(_MODELS)} {rng.choice(nouns)}"
                if name in used:
                    continue
                used.add(name)
                brand, brand_code = rng.choice(_BRANDS)
                variant = rng.choice(_COLORS)
                pid += self._ri(1, 37)
                eur = int(rng.uniform(lo, hi)) + rng.choice((0.95, 0.99))
                ratio = rng.uniform(0.35, 0.62)
                price, cost = {"EUR": round(eur, 2)}, {"EUR": round(eur * ratio, 2)}
                for cur in ("GBP", "USD"):
                    local = max(1, round(eur * _FX[cur])) - 0.01
                    price[cur], cost[cur] = round(local, 2), round(local * ratio, 2)
                items.append(
                    _Product(
                        product_id=f"P{pid}",
                        sku=f"{brand_code}-{code}-{len(self.products) + len(items) + 1:04d}-"
                        f"{variant[:3].upper()}",
                        name=name,
                        category=category,
                        brand=brand,
                        variant=variant,
                        price=price,
                        cost=cost,
                        slug=name.lower().replace(" ", "-"),
                    )
                )
            self.by_category[category] = items
            self.products.extend(items)
        # Popularity: a few best sellers, a long tail.
        order = list(self.products)
        rng.shuffle(order)
        self.popular = order
        self.popular_cw = list(itertools.accumulate(1.0 / (rank + 4) for rank in range(len(order))))
        self.category_cw = {
            cat: list(itertools.accumulate(1.0 / (rank + 2) for rank in range(len(items))))
            for cat, items in self.by_category.items()
        }
        self.categories = [c[0] for c in _CATEGORIES]

    def _build_name_pools(self) -> None:
        """Draw name and street pools from Faker once (Faker is slow in inner loops).

        A bare ``faker.Generator`` with just the person and address providers of each
        locale avoids the provider discovery that makes ``Faker(locale)`` take ~0.1 s.
        """
        self.pools: dict[str, dict[str, list[str]]] = {}
        for index, country in enumerate(_COUNTRIES):
            fake = Generator(locale=country.faker_locale)
            for provider in ("person", "address"):
                module = importlib.import_module(
                    f"faker.providers.{provider}.{country.faker_locale}"
                )
                fake.add_provider(module.Provider)
            fake.seed_instance(self.seed * 100 + index)
            female = list(dict.fromkeys(fake.first_name_female() for _ in range(140)))
            male = list(dict.fromkeys(fake.first_name_male() for _ in range(140)))
            last = [
                n
                for n in dict.fromkeys(fake.last_name() for _ in range(220))
                if "," not in n and not n.endswith((" van", " von", " de"))
            ]
            streets = list(dict.fromkeys(fake.street_name() for _ in range(160)))
            for formal in _NICK_BY_COUNTRY[country.code]:
                (female if _NICKNAMES[formal][0] == "f" else male).append(formal)
            self.pools[country.code] = {"f": female, "m": male, "last": last, "street": streets}
        self.country_cw = list(itertools.accumulate(c.weight for c in _COUNTRIES))

    def _build_campaigns(self) -> None:
        rng = self.rng
        self.campaigns: list[dict] = []
        for i, day in enumerate(range(3, WINDOW_DAYS - 2, 7)):
            theme, subjects = _CAMPAIGN_THEMES[i % len(_CAMPAIGN_THEMES)]
            n = rng.choice((5, 7, 10, 12, 20, 30))
            self.campaigns.append(
                {
                    "campaign_id": f"cmp_{i + 1:03d}",
                    "campaign_name": f"Newsletter #{i + 1}: {theme}",
                    "subjects": {lang: s.format(n=n) for lang, s in subjects.items()},
                    "send_at": day * DAY + 8 * HOUR + rng.randrange(2 * HOUR),
                    "category": self.categories[i % len(self.categories)],
                }
            )

    # ---------------------------------------------------------------- helpers

    def _new_id(self, prefix: str = "") -> str:
        while True:
            value = prefix + _uuid(self.rng)
            if value not in self.used_ids:
                self.used_ids.add(value)
                return value

    def _emit(self, source: str, t: int, msg: dict) -> bool:
        """Queue a message; messages at or after the end of the window are dropped."""
        if t >= HORIZON:
            return False
        self.counter += 1
        msg["messageId"] = f"demo-{self.seed}-{self.counter:08d}"
        self.out[source].append((t, self.counter, msg))
        return True

    def _iso(self, t: int) -> str:
        day, ms = divmod(t, DAY)
        prefix = self.day_prefix.get(day)
        if prefix is None:
            prefix = (self.base + timedelta(days=day)).date().isoformat() + "T"
            self.day_prefix[day] = prefix
        seconds, ms = divmod(ms, 1000)
        minutes, seconds = divmod(seconds, 60)
        return f"{prefix}{minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}.{ms:03d}Z"

    def _ri(self, low: int, high: int) -> int:
        """Like ``rng.randint`` (inclusive) but several times faster."""
        return low + int(self.random() * (high - low + 1))

    def _date(self, t: int) -> str:
        return (self.base + timedelta(milliseconds=t)).date().isoformat()

    def _pick(self, category: str | None = None) -> _Product:
        if category is None:
            return self.rng.choices(self.popular, cum_weights=self.popular_cw)[0]
        return self.rng.choices(self.by_category[category], cum_weights=self.category_cw[category])[
            0
        ]

    def _local_time(
        self, p: _Person, day: int, hours: tuple[int, int] | None = None, offset: int | None = None
    ) -> int:
        """A time on ``day`` at a plausible local hour (or within ``hours``), as an offset."""
        rng = self.rng
        if hours is None:
            hour = bisect.bisect_right(_HOUR_CW, rng.random() * _HOUR_CW[-1])
        else:
            hour = rng.randrange(*hours)
        offset = p.offset if offset is None else offset
        return day * DAY + hour * HOUR + int(self.random() * HOUR) - offset * HOUR

    def _ip(self) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            return (
                f"2001:db8:{rng.randrange(0x10000):x}:{rng.randrange(0x10000):x}::"
                f"{rng.randrange(1, 0x10000):x}"
            )
        block = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
        return f"{block}.{self._ri(1, 254)}"

    def _server_ctx(self, p: _Person, ip: str, traits: dict | None = None) -> dict:
        ctx = {
            "library": dict(_SERVER_LIB),
            "locale": p.locale,
            "timezone": p.tz,
            "ip": ip,
            "userAgent": _SERVER_UA,
        }
        if traits:
            ctx["traits"] = traits
        return ctx

    # ---------------------------------------------------------------- people

    def _make_person(self, index: int, kind: str) -> _Person:
        rng = self.rng
        country = rng.choices(_COUNTRIES, cum_weights=self.country_cw)[0]
        city = rng.choice(country.cities)
        pools = self.pools[country.code]
        gender = "f" if rng.random() < 0.52 else "m"
        first = rng.choice(pools[gender])
        last = rng.choice(pools["last"])
        if country.code == "ES" and rng.random() < 0.6:
            second = rng.choice(pools["last"])
            if second != last:
                last = f"{last} {second}"
        language, locale = country.language, country.locale
        if rng.random() < 0.07:  # expats and English-language browsers
            language, locale = "en", rng.choice(("en-US", "en-GB"))
        elif country.code == "US" and rng.random() < 0.08:
            language, locale = "es", "es-US"
        area = city[5]
        e164, national = _phone(rng, country.code, area, wide=False)
        tries = 0
        while e164 in self.used_phones:
            tries += 1
            e164, national = _phone(
                rng, country.code, rng.choice(country.cities)[5] or area, wide=tries > 20
            )
        self.used_phones.add(e164)
        age_days = self._ri(18 * 365, 78 * 365)
        birthday = (self.base - timedelta(days=age_days)).date().isoformat()
        email = self._make_email(first, last, int(birthday[:4]))
        street = rng.choice(pools["street"])
        number = self._ri(1, 180)
        if country.code in ("GB", "US", "FR"):
            street_line = f"{number} {street}"
        elif country.code in ("ES", "IT"):
            street_line = f"{street}, {number}"
        else:
            street_line = f"{street} {number}"
        address = {
            "street": street_line,
            "city": city[0],
            "postalCode": _pattern(rng, city[1]),
            "country": country.code,
        }
        if city[4]:
            address["state"] = city[4]
        web_phone: str | None = None
        if rng.random() < 0.65:
            web_phone = e164 if rng.random() < 0.6 else national
        return _Person(
            pid=f"person-{index + 1:06d}",
            kind=kind,
            country=country,
            city=city,
            locale=locale,
            language=language,
            first=first,
            last=last,
            email=email,
            new_email=None,
            email_changed_at=HORIZON,
            phone=e164,
            phone_national=national,
            web_phone=web_phone,
            birthday=birthday,
            shares_birthday=rng.random() < 0.35,
            address=address,
            home_ip=self._ip(),
            engagement=rng.random() ** 1.5,
            fav_categories=(rng.choice(self.categories), rng.choice(self.categories)),
        )

    def _make_email(self, first: str, last: str, birth_year: int) -> str:
        rng = self.rng
        f, lname = _slug(first) or "x", _slug(last.split(" ")[0]) or "y"
        if last.lower().startswith(("van ", "de ", "von ", "di ", "da ")):
            lname = _slug(last)
        r = rng.random()
        if r < 0.35:
            local = f"{f}.{lname}"
        elif r < 0.5:
            local = f"{f[0]}{lname}"
        elif r < 0.62:
            local = f"{f}{lname}"
        elif r < 0.72:
            local = f"{f}.{lname}{birth_year % 100:02d}"
        elif r < 0.8:
            local = f"{lname}.{f}"
        elif r < 0.9:
            local = f"{f}_{lname}"
        else:
            local = f"{f}{self._ri(1, 999)}"
        domain = rng.choices(_EMAIL_DOMAINS, cum_weights=_EMAIL_DOMAIN_CW)[0]
        email = f"{local}@{domain}"
        while email in self.used_emails:
            email = f"{local}{self._ri(1, 9999)}@{domain}"
        self.used_emails.add(email)
        return email

    def _make_device(self, p: _Person, kind: str, form: str) -> _Device:
        rng = self.rng
        chrome, firefox = self._ri(124, 131), self._ri(125, 133)
        ios = rng.choice(("17_4_1", "17_5", "17_6_1", "18_0", "18_1"))
        safari = rng.choice(("17.4.1", "17.5", "17.6", "18.0", "18.1"))
        ip = p.home_ip if form == "desktop" else self._ip()
        ctx: dict = {"locale": p.locale, "timezone": p.tz, "ip": ip}
        version = None
        if kind == "web":
            templates = {"desktop": _DESKTOP_UA, "mobile": _MOBILE_UA, "tablet": _TABLET_UA}[form]
            ua = rng.choice(templates).format(v=chrome, f=firefox, i=ios, s=safari)
            ctx = {"library": dict(_WEB_LIB), **ctx, "userAgent": ua}
        else:
            version = rng.choice(_APP_VERSIONS)
            app = {
                "name": SHOP_NAME,
                "version": version[0],
                "build": version[1],
                "namespace": "com.example.harbourpine",
            }
            if rng.random() < 0.55:
                model, width, height = rng.choice(_IOS_MODELS)
                os_version = ios.replace("_", ".")
                ctx = {
                    "library": dict(_IOS_LIB),
                    **ctx,
                    "userAgent": f"HarbourPine/{version[0]} (iPhone; iOS {os_version}; Scale/3.00)",
                    "app": app,
                    "device": {
                        "id": _uuid(rng).upper(),
                        "manufacturer": "Apple",
                        "model": model,
                        "name": "iPhone",
                        "type": "ios",
                    },
                    "os": {"name": "iOS", "version": os_version},
                    "screen": {"width": width, "height": height, "density": 3},
                }
            else:
                maker, model, build = rng.choice(_ANDROID_MODELS)
                android = rng.choice(("13", "14", "15"))
                ctx = {
                    "library": dict(_ANDROID_LIB),
                    **ctx,
                    "userAgent": f"Dalvik/2.1.0 (Linux; U; Android {android}; {model} "
                    f"Build/{build})",
                    "app": app,
                    "device": {
                        "id": f"{rng.getrandbits(64):016x}",
                        "manufacturer": maker,
                        "model": model,
                        "name": model,
                        "type": "android",
                    },
                    "os": {"name": "Android", "version": android},
                    "screen": {"width": 1080, "height": 2400, "density": 2.75},
                }
            ctx["network"] = {"wifi": rng.random() < 0.6, "cellular": True}
        return _Device(anon_id=self._new_id(), kind=kind, form=form, ctx=ctx, app_version=version)

    def _devices_for(self, p: _Person, count: int) -> None:
        rng = self.rng
        for i in range(count):
            r = rng.random()
            if r < (0.5 if i == 0 else 0.3):
                kind, form = "web", "desktop"
            elif r < 0.78:
                kind, form = "web", "mobile"
            elif r < 0.85:
                kind, form = "web", "tablet"
            else:
                kind, form = "app", "mobile"
            dev = self._make_device(p, kind, form)
            dev.never_login = i > 0 and rng.random() < 0.25
            p.devices.append(dev)

    def _people(self) -> list[_Person]:
        rng = self.rng
        weights = (
            ("online", 0.70),
            ("anonymous", 0.12),
            ("subscriber", 0.05),
            ("store", 0.09),
            ("crm_only", 0.04),
        )
        kinds_cw = list(itertools.accumulate(w for _, w in weights))
        kinds = [k for k, _ in weights]
        user_numbers = rng.sample(range(1_000_000, 9_999_999), self.customers)
        people: list[_Person] = []
        by_country: dict[str, list[_Person]] = {}
        for index in range(self.customers):
            kind = rng.choices(kinds, cum_weights=kinds_cw)[0]
            p = self._make_person(index, kind)
            peers = by_country.setdefault(p.country.code, [])
            if kind != "anonymous" and peers and rng.random() < 0.012:
                # Namesakes: a different person with the same name, sometimes same city.
                other = rng.choice(peers)
                if other.kind != "anonymous":
                    p.first, p.last = other.first, other.last
                    p.email = self._make_email(p.first, p.last, int(p.birthday[:4]))
                    if rng.random() < 0.5:
                        p.city, p.address = other.city, {**p.address, "city": other.address["city"]}
                    p.flags["namesake_of"] = other.pid
                    other.flags.setdefault("namesakes", []).append(p.pid)
            if kind == "online":
                p.user_id = f"C{user_numbers[index]}"
                count = rng.choices((1, 2, 3, 4), cum_weights=(45, 80, 95, 100))[0]
                self._devices_for(p, count)
                self._maybe_household(p, peers)
            elif kind in ("anonymous", "subscriber"):
                self._devices_for(p, 1 if rng.random() < 0.7 else 2)
                for dev in p.devices:
                    dev.never_login = True
            if kind in ("online", "store") and rng.random() < (0.35 if kind == "online" else 1):
                p.store = next(
                    s for s in rng.sample(_STORES, len(_STORES)) if s[2] == p.country.code
                )
                p.pos_ident = "card" if rng.random() < 0.65 else "phone"
            if kind in ("online", "subscriber", "store"):
                p.opt_in = rng.random() < (0.65 if kind != "subscriber" else 1.0)
                if p.opt_in:
                    p.esp_id = f"sub_{rng.getrandbits(48):012x}"
            if kind == "online" and rng.random() < 0.03:
                p.new_email = self._make_email(p.first, p.last, int(p.birthday[:4]))
                p.email_changed_at = self._ri(60, 170) * DAY
                p.flags["email_changed"] = True
            peers.append(p)
            people.append(p)
        return people

    def _maybe_household(self, p: _Person, peers: list[_Person]) -> None:
        """Share a computer (and address and home IP) with an earlier online customer."""
        rng = self.rng
        if rng.random() >= 0.03:
            return
        candidates = [
            o
            for o in peers[-40:]
            if o.kind == "online"
            and not o.flags.get("household_with")
            and o.devices
            and o.devices[0].form == "desktop"
        ]
        if not candidates:
            return
        other = rng.choice(candidates)
        shared = other.devices[0]
        shared.shared = True
        p.devices.append(shared)
        p.address = dict(other.address)
        p.city = other.city
        p.home_ip = other.home_ip
        if rng.random() < 0.5:
            p.last = other.last
        p.flags["household_with"] = other.pid
        p.flags["shared_device"] = shared.anon_id
        other.flags["household_with"] = p.pid
        other.flags["shared_device"] = shared.anon_id

    # ---------------------------------------------------------------- online behaviour

    def _simulate_online(self, p: _Person) -> None:
        rng = self.rng
        n = min(60, max(1, int(rng.paretovariate(1.5) * 2.5)))
        if p.kind != "online":
            n = min(n, self._ri(1, 5))
        first_day = self._ri(1, 170)
        days = sorted(self._ri(first_day, WINDOW_DAYS - 2) for _ in range(n))
        signup_index = min(n - 1, int(rng.expovariate(0.8))) if p.kind != "anonymous" else n
        own = [d for d in p.devices if not d.shared] or p.devices
        loginable = [d for d in p.devices if not d.never_login] or p.devices
        dev_cw = list(
            itertools.accumulate(
                0.6 if i == 0 else 0.4 / len(p.devices) for i in range(len(p.devices))
            )
        )
        seeds: list[tuple[int, int, _Device, str, dict | None]] = []
        for i, day in enumerate(days):
            t = self._local_time(p, day)
            if i < signup_index:
                phase, dev = "pre", rng.choice(own)
            elif i == signup_index:
                phase, dev = "signup", rng.choice(loginable)
                p.signup_at = t
            else:
                phase = "post" if p.kind == "online" else "sub"
                dev = rng.choices(p.devices, cum_weights=dev_cw)[0]
            seeds.append((t, i, dev, phase, None))
        if p.opt_in and p.kind in ("online", "subscriber"):
            p.subscribed_at = p.signup_at + DAY
        if p.esp_id and p.kind in ("online", "subscriber"):
            for click_t, campaign in self._campaign_emails(p):
                web = [d for d in p.devices if d.kind == "web" and d.form != "desktop"]
                dev = (web or p.devices)[0]
                phase = "post" if p.kind == "online" else "sub"
                seeds.append((click_t + self._ri(3, 20) * 1000, len(seeds), dev, phase, campaign))
        seeds.sort(key=lambda s: (s[0], s[1]))
        for t, _, dev, phase, origin in seeds:
            if phase == "pre" and dev.logged_in not in (None, p.user_id):
                continue  # someone else is logged in on the shared computer
            start = max(t, p.busy_until + self._ri(5, 30) * MINUTE)
            if phase == "signup":
                p.signup_at = start  # a little later than planned if a visit ran long
            p.busy_until = self._session(p, dev, start, phase, origin)

    def _session(self, p: _Person, dev: _Device, t: int, phase: str, origin: dict | None) -> int:
        """Simulate one visit; returns the time it ended."""
        rng = self.rng
        lang = p.language
        uid = p.user_id if (p.user_id and dev.logged_in == p.user_id) else None
        referrer = ""
        campaign = None
        if origin is not None:
            campaign = {
                "name": origin["campaign_name"],
                "source": "newsletter",
                "medium": "email",
                "content": origin["campaign_id"],
            }
            landing = "category"
            focus = origin["category"]
        else:
            referrer = rng.choices(_REFERRERS, cum_weights=_REFERRER_CW)[0][0]
            landing = rng.choices(("home", "product", "category"), cum_weights=(45, 75, 100))[0]
            focus = (
                rng.choice(p.fav_categories) if rng.random() < 0.7 else rng.choice(self.categories)
            )
        v = _Visit(self, p, dev, uid, referrer, campaign)
        if dev.kind == "app":
            version, build = dev.app_version or _APP_VERSIONS[-1]
            if not dev.installed:
                dev.installed = True
                v.track(t, "Application Installed", {"version": version, "build": build})
                t += self._ri(2, 20) * 1000
            opened = {"from_background": rng.random() < 0.4, "version": version, "build": build}
            if origin is not None:
                opened["url"] = f"{APP_SCHEME}c/{focus.lower()}?utm_source=newsletter"
            v.track(t, "Application Opened", opened)
            t += self._ri(1, 5) * 1000
        can_login = p.user_id is not None and phase in ("signup", "post") and not dev.never_login
        mode = "browse"
        if phase == "signup" and p.kind == "online":
            mode = "checkout_signup" if rng.random() < 0.6 else "account_signup"
        elif phase == "signup":
            mode = "newsletter_signup"
        if (
            phase == "post"
            and can_login
            and uid is None
            and (dev.logged_in is not None or rng.random() < 0.5)
        ):
            t = v.view(t, "Login", f"/{lang}/account/login", "Log in")
            t += self._ri(15, 60) * 1000
            t = self._login(v, t, full=False)

        # Landing page.
        viewed: list[_Product] = []
        if landing == "home":
            t = v.view(t, "Home", f"/{lang}/", SHOP_NAME)
        elif landing == "category":
            search = (
                f"?utm_source=newsletter&utm_medium=email&utm_campaign={origin['campaign_id']}"
                if origin is not None
                else ""
            )
            t = self._category_page(v, t, focus, search)
        else:
            prod = self._pick(focus)
            t = self._product_page(v, t, prod)
            viewed.append(prod)
        if mode == "account_signup":
            t = v.view(t, "Sign Up", f"/{lang}/account/register", "Create account")
            t += self._ri(40, 150) * 1000
            t = self._login(v, t, full=True, signup=True)
        elif mode == "newsletter_signup":
            traits = {"email": p.email}
            if rng.random() < 0.5:
                traits["firstName"] = p.first
            v.identify(t, traits, with_user=False)
            v.track(t + 400, "Newsletter Subscribed", {"list_id": "newsletter", "form": "footer"})
            t += self._ri(5, 30) * 1000

        # Browsing.
        n_views = 1 + min(7, int(rng.expovariate(0.6)))
        if rng.random() < 0.25:
            query = _SEARCHES.get(lang, _SEARCHES["en"])[focus]
            v.track(t, "Products Searched", {"query": query})
            t += self._ri(1, 3) * 1000
            t = v.view(
                t,
                "Search",
                f"/{lang}/search",
                f"Search: {query} | {SHOP_NAME}",
                search=f"?q={query.replace(' ', '+')}",
            )
        while len(viewed) < n_views:
            if rng.random() < 0.25:
                focus = rng.choice(self.categories)
                t = self._category_page(v, t, focus, "")
            prod = self._pick(focus if rng.random() < 0.7 else None)
            t = self._product_page(v, t, prod)
            viewed.append(prod)

        # Cart and checkout.
        if mode == "checkout_signup":
            p_add, p_checkout, p_complete = 1.0, 1.0, 1.0
        elif phase == "post" and can_login:
            p_add, p_checkout, p_complete = 0.32, 0.6, 0.85
        else:
            p_add, p_checkout, p_complete = 0.2, 0.0, 0.0
        if rng.random() >= p_add:
            return t
        cart_id = self._cart_id()
        distinct = list(dict.fromkeys(viewed))
        lines = [
            (prod, 1 if rng.random() < 0.85 else 2)
            for prod in distinct[: self._ri(1, min(3, len(distinct)))]
        ]
        for prod, qty in lines:
            v.track(t, "Product Added", {"cart_id": cart_id, **self._product_props(prod, p, qty)})
            t += self._ri(10, 90) * 1000
        if len(lines) > 1 and rng.random() < 0.1:
            prod, qty = lines.pop()
            v.track(t, "Product Removed", {"cart_id": cart_id, **self._product_props(prod, p, qty)})
            t += self._ri(5, 30) * 1000
        t = v.view(t, "Cart", f"/{lang}/cart", f"Cart | {SHOP_NAME}")
        v.track(
            t + 300,
            "Cart Viewed",
            {
                "cart_id": cart_id,
                "products": [self._product_props(prod, p, qty) for prod, qty in lines],
            },
        )
        t += self._ri(10, 60) * 1000
        if rng.random() >= p_checkout:
            send = t + self._ri(2, 5) * HOUR
            if (
                v.uid is not None
                and p.esp_id
                and p.subscribed_at < send < p.unsubscribed_at
                and rng.random() < 0.5
            ):
                self._abandoned_cart_email(p, send, lines)
            return t
        if v.uid is None:
            t = v.view(t, "Login", f"/{lang}/account/login", "Log in")
            t += self._ri(30, 120) * 1000
            t = self._login(
                v,
                t,
                full=mode == "checkout_signup",
                signup=mode == "checkout_signup",
                with_address=True,
            )
        return self._checkout(v, t, cart_id, lines, p_complete)

    def _login(
        self, v: _Visit, t: int, *, full: bool, signup: bool = False, with_address: bool = False
    ) -> int:
        p = v.p
        traits: dict = {"email": p.email_at(t), "firstName": p.first, "lastName": p.last}
        if full:
            traits["name"] = f"{p.first} {p.last}"
            if p.web_phone:
                traits["phone"] = p.web_phone
            if p.shares_birthday:
                traits["birthday"] = p.birthday
            traits["language"] = p.language
            traits["createdAt"] = self._iso(t)
        if with_address:
            traits["address"] = dict(p.address)
        if p.card_linked and t > p.card_issued_at:
            traits["loyaltyCard"] = p.loyalty_card
        v.identify(t, traits, with_user=True)
        if signup:
            v.track(t + self._ri(200, 900), "Signed Up", {"method": "email"})
        return t + self._ri(2, 8) * 1000

    def _category_page(self, v: _Visit, t: int, category: str, search: str) -> int:
        lang = v.p.language
        t = v.view(
            t,
            "Category",
            f"/{lang}/c/{category.lower()}",
            f"{category} | {SHOP_NAME}",
            search=search,
        )
        items = self.by_category[category][:6]
        v.track(
            t + 500,
            "Product List Viewed",
            {
                "list_id": f"category-{category.lower()}",
                "category": category,
                "products": [
                    {
                        "product_id": pr.product_id,
                        "sku": pr.sku,
                        "name": pr.name,
                        "price": pr.price[v.p.currency],
                        "position": i + 1,
                    }
                    for i, pr in enumerate(items)
                ],
            },
        )
        return t + self._ri(8, 60) * 1000

    def _product_page(self, v: _Visit, t: int, prod: _Product) -> int:
        lang = v.p.language
        t = v.view(
            t,
            "Product",
            f"/{lang}/p/{prod.slug}-{prod.product_id}",
            f"{prod.name} | {SHOP_NAME}",
            product=prod,
        )
        v.track(t + 400, "Product Viewed", self._product_props(prod, v.p, None))
        return t + self._ri(15, 180) * 1000

    def _product_props(self, prod: _Product, p: _Person, qty: int | None) -> dict:
        props = {
            "product_id": prod.product_id,
            "sku": prod.sku,
            "category": prod.category,
            "name": prod.name,
            "brand": prod.brand,
            "variant": prod.variant,
            "price": prod.price[p.currency],
            "currency": p.currency,
            "url": f"{SHOP_URL}/{p.language}/p/{prod.slug}-{prod.product_id}",
            "image_url": f"{SHOP_URL}/img/{prod.product_id}.jpg",
        }
        if qty is not None:
            props["quantity"] = qty
        return props

    def _cart_id(self) -> str:
        self.cart_seq += 1
        return f"cart-{self.rng.getrandbits(40):010x}{self.cart_seq:x}"

    def _order_lines(self, lines: list[tuple[_Product, int]], currency: str) -> list[dict]:
        return [
            {
                "product_id": prod.product_id,
                "sku": prod.sku,
                "name": prod.name,
                "category": prod.category,
                "brand": prod.brand,
                "variant": prod.variant,
                "price": prod.price[currency],
                "cost": prod.cost[currency],
                "quantity": qty,
            }
            for prod, qty in lines
        ]

    def _checkout(
        self, v: _Visit, t: int, cart_id: str, lines: list[tuple[_Product, int]], p_complete: float
    ) -> int:
        rng, p = self.rng, v.p
        cur = p.currency
        self.order_seq += self._ri(1, 9)
        order_id = f"HP-{self.order_seq}"
        products = self._order_lines(lines, cur)
        subtotal = round(sum(prod.price[cur] * qty for prod, qty in lines), 2)
        coupon = rng.choice(_COUPONS) if rng.random() < 0.15 else None
        discount = round(subtotal * 0.1, 2) if coupon and coupon != "FREESHIP" else 0.0
        revenue = round(subtotal - discount, 2)
        shipping = 0.0 if revenue >= 50 or coupon == "FREESHIP" else 4.95
        if p.country.code == "US":
            tax = round(revenue * p.country.vat, 2)
            total = round(revenue + tax + shipping, 2)
        else:
            tax = round(revenue - revenue / (1 + p.country.vat), 2)
            total = round(revenue + shipping, 2)
        lang = p.language
        t = v.view(t, "Checkout", f"/{lang}/checkout", f"Checkout | {SHOP_NAME}")
        v.track(
            t + 300,
            "Checkout Started",
            {
                "checkout_id": cart_id,
                "order_id": order_id,
                "value": subtotal,
                "revenue": revenue,
                "currency": cur,
                "products": self._order_lines(lines, cur),
            },
        )
        t += self._ri(20, 90) * 1000
        if coupon:
            v.track(
                t,
                "Coupon Applied",
                {
                    "order_id": order_id,
                    "cart_id": cart_id,
                    "coupon_id": coupon,
                    "coupon_name": coupon,
                    "discount": discount,
                },
            )
            t += self._ri(5, 20) * 1000
        payment = rng.choice(("card", "card", "card", "paypal", "apple_pay", "klarna"))
        v.track(
            t,
            "Payment Info Entered",
            {"checkout_id": cart_id, "order_id": order_id, "payment_method": payment},
        )
        t += self._ri(20, 120) * 1000
        if rng.random() >= p_complete:
            return t
        props = {
            "checkout_id": cart_id,
            "order_id": order_id,
            "affiliation": v.dev_source,
            "total": total,
            "subtotal": subtotal,
            "revenue": revenue,
            "shipping": shipping,
            "tax": tax,
            "discount": discount,
            "currency": cur,
            "payment_method": payment,
            "products": products,
        }
        if coupon:
            props["coupon"] = coupon
        if v.track(t, "Order Completed", props):
            p.orders.append(
                {
                    "order_id": order_id,
                    "t": t,
                    "currency": cur,
                    "lines": lines,
                    "source": v.dev_source,
                    "total": total,
                }
            )
        t = v.view(
            t + 1500,
            "Order Confirmation",
            f"/{lang}/checkout/confirmation",
            f"Thank you | {SHOP_NAME}",
        )
        return t + self._ri(5, 60) * 1000

    # ---------------------------------------------------------------- after-sales

    def _refunds_and_support(self, p: _Person) -> None:
        rng = self.rng
        for order in p.orders:
            if rng.random() >= 0.09:
                continue
            t = order["t"] + self._ri(3, 25) * DAY + rng.randrange(8 * HOUR)
            if t >= HORIZON:
                continue
            if rng.random() < 0.35:
                self._support_contact(p, t - self._ri(20, 40) * HOUR, "returns", order["order_id"])
            lines = order["lines"][: self._ri(1, len(order["lines"]))]
            products = self._order_lines(lines, order["currency"])
            amount = round(sum(x["price"] * x["quantity"] for x in products), 2)
            self._emit(
                "web-shop",
                t,
                {
                    "type": "track",
                    "event": "Order Refunded",
                    "userId": p.user_id,
                    "properties": {
                        "order_id": order["order_id"],
                        "total": amount,
                        "currency": order["currency"],
                        "products": products,
                        "reason": rng.choice(_RETURN_REASONS),
                    },
                    "context": self._server_ctx(p, _SHOP_SERVER_IP),
                },
            )
        # Other contacts, once the help desk can know them: after sign-up or a store visit.
        known_from = p.signup_at if p.kind == "online" else min(p.store_visits, default=HORIZON)
        if p.kind in ("online", "store") and known_from < HORIZON - DAY and rng.random() < 0.12:
            for _ in range(self._ri(1, 2)):
                t = known_from + HOUR + int(self.random() * (HORIZON - known_from - 2 * HOUR))
                order_id = None
                earlier = [o for o in p.orders if o["t"] < t]
                if earlier and rng.random() < 0.6:
                    order_id = earlier[-1]["order_id"]
                topics = [x for x in _SUPPORT_TOPICS if x != "returns"]
                self._support_contact(p, t, rng.choice(topics), order_id)

    def _support_contact(self, p: _Person, t: int, topic: str, order_id: str | None) -> None:
        rng = self.rng
        if t >= HORIZON:
            return
        if p.support_id is None:
            p.support_id = f"zd-{rng.randrange(10**9):09d}"
            p.support_synced = p.user_id is not None and rng.random() < 0.6
            contact: dict = {}
            if p.kind == "store" and p.pos_ident == "phone" and rng.random() < 0.5:
                contact["phone"] = p.phone_national
            else:
                contact["email"] = p.email_at(t)
            contact["name"] = f"{p.first} {p.last}" if rng.random() < 0.7 else p.first
            self._support_msg(p, t - 2000, "identify", None, contact)
        channel = rng.choice(("email", "email", "chat", "phone", "web_form"))
        if channel == "chat":
            chat_id = f"chat-{rng.getrandbits(40):010x}"
            self._support_msg(
                p,
                t,
                "Chat Started",
                {
                    "chat_id": chat_id,
                    "topic": topic,
                    **({"order_id": order_id} if order_id else {}),
                },
                None,
            )
            self._support_msg(
                p,
                t + self._ri(4, 25) * MINUTE,
                "Chat Ended",
                {
                    "chat_id": chat_id,
                    "topic": topic,
                    "satisfaction": rng.choice((3, 4, 4, 5, 5, 5)),
                },
                None,
            )
            return
        self.ticket_seq += self._ri(1, 4)
        ticket = f"T-{self.ticket_seq}"
        props = {
            "ticket_id": ticket,
            "topic": topic,
            "channel": channel,
            "priority": rng.choice(("low", "normal", "normal", "high")),
            "subject": _SUPPORT_SUBJECTS[topic],
        }
        if order_id:
            props["order_id"] = order_id
        self._support_msg(p, t, "Ticket Created", props, None)
        hours = round(rng.uniform(0.5, 72), 1)
        self._support_msg(
            p,
            t + int(hours * HOUR),
            "Ticket Resolved",
            {
                "ticket_id": ticket,
                "topic": topic,
                "resolution_hours": hours,
                "satisfaction": rng.choice((None, 2, 3, 4, 5, 5)),
            },
            None,
        )

    def _support_msg(
        self, p: _Person, t: int, event: str, props: dict | None, traits: dict | None
    ) -> None:
        msg: dict = {"type": "identify" if event == "identify" else "track"}
        if event != "identify":
            msg["event"] = event
            msg["properties"] = {k: v for k, v in (props or {}).items() if v is not None}
        else:
            msg["traits"] = dict(traits or {})
        if p.support_synced:
            msg["userId"] = p.user_id
        else:
            msg["anonymousId"] = p.support_id
        ctx_traits = {"email": p.email_at(t)} if p.support_synced else None
        msg["context"] = self._server_ctx(p, _DESK_IP, ctx_traits)
        self._emit("support", t, msg)

    # ---------------------------------------------------------------- email

    def _email_ids(self, p: _Person, t: int) -> tuple[dict, dict]:
        ids = {"userId": p.user_id} if p.kind == "online" else {"anonymousId": p.esp_id}
        return ids, self._server_ctx(p, _ESP_IP, {"email": p.email_at(t)})

    def _campaign_emails(self, p: _Person) -> list[tuple[int, dict]]:
        """Send every campaign after the person subscribed; returns (click time, campaign)."""
        rng = self.rng
        clicks: list[tuple[int, dict]] = []
        p_open = 0.08 + 0.6 * p.engagement
        p_click = 0.08 + 0.35 * p.engagement
        for campaign in self.campaigns:
            if p.unsubscribed_at < HORIZON:
                break
            if campaign["send_at"] <= p.subscribed_at:
                continue
            t = campaign["send_at"] + rng.randrange(20 * MINUTE)
            props = {
                "email_id": f"em-{campaign['campaign_id']}-{p.esp_id}",
                "campaign_id": campaign["campaign_id"],
                "campaign_name": campaign["campaign_name"],
                "email_subject": campaign["subjects"].get(p.language, campaign["subjects"]["en"]),
            }
            self._email(p, t, "Email Delivered", props)
            if rng.random() >= p_open:
                continue
            t += int(rng.expovariate(1 / (6 * HOUR))) + MINUTE
            self._email(p, t, "Email Opened", props)
            if rng.random() < 0.012:
                self._email(
                    p,
                    t + self._ri(5, 60) * 1000,
                    "Unsubscribed",
                    {**props, "list_id": "newsletter"},
                )
                p.unsubscribed_at = t
                continue
            if rng.random() < p_click:
                t += self._ri(5, 120) * 1000
                link = (
                    f"{SHOP_URL}/{p.language}/c/{campaign['category'].lower()}"
                    "?utm_source=newsletter"
                    f"&utm_medium=email&utm_campaign={campaign['campaign_id']}"
                )
                if self._email(p, t, "Email Link Clicked", {**props, "link_url": link}):
                    clicks.append((t, campaign))
        return clicks

    def _email(self, p: _Person, t: int, event: str, props: dict) -> bool:
        ids, ctx = self._email_ids(p, t)
        return self._emit(
            "email",
            t,
            {"type": "track", "event": event, **ids, "properties": dict(props), "context": ctx},
        )

    def _abandoned_cart_email(self, p: _Person, t: int, lines: list[tuple[_Product, int]]) -> None:
        campaign_id, name, subjects = _ABANDONED
        props = {
            "email_id": f"em-abandoned-{self.rng.getrandbits(40):010x}",
            "campaign_id": campaign_id,
            "campaign_name": name,
            "email_subject": subjects.get(p.language, subjects["en"]),
            "product_ids": [prod.product_id for prod, _ in lines],
        }
        if self._email(p, t, "Email Delivered", props) and self.rng.random() < 0.45:
            props["product_ids"] = list(props["product_ids"])
            self._email(p, t + self._ri(10, 600) * MINUTE, "Email Opened", props)

    # ---------------------------------------------------------------- stores

    def _plan_store(self, p: _Person) -> None:
        rng = self.rng
        if p.store is None:
            return
        visits = 1 + min(11, int(rng.expovariate(0.45)))
        days = sorted(self._ri(1, WINDOW_DAYS - 2) for _ in range(visits))
        store_country = _COUNTRY[p.store[2]]
        offset = store_country.cities[p.store[3]][3]
        p.store_visits = [self._local_time(p, d, (10, 20), offset) for d in days]
        if p.pos_ident == "card":
            p.loyalty_card = _ean13("29" + _num(rng, 10))
            while p.loyalty_card in self.used_ids:
                p.loyalty_card = _ean13("29" + _num(rng, 10))
            self.used_ids.add(p.loyalty_card)
            p.card_issued_at = p.store_visits[0] - 5 * MINUTE
            p.card_linked = p.kind == "online" and rng.random() < 0.5
        if p.kind == "store" and p.opt_in:
            p.subscribed_at = p.store_visits[0] + DAY

    def _simulate_store(self, p: _Person) -> None:
        rng = self.rng
        if p.store is None:
            return
        store_id, store_name, country, _ = p.store
        cur = _COUNTRY[country].currency
        typed_phone = rng.choice(
            list(_phone_formats(country, p.phone, p.phone_national).values())[1:3]
        )
        if p.pos_ident == "card" and p.card_issued_at >= POS_GO_LIVE:
            traits = {
                "loyaltyCard": p.loyalty_card,
                "firstName": p.first,
                "lastName": p.last,
                "phone": typed_phone,
            }
            if rng.random() < 0.7:
                traits["email"] = p.email
            self._emit(
                "pos",
                p.card_issued_at,
                {
                    "type": "identify",
                    "userId": p.loyalty_card,
                    "traits": traits,
                    "context": self._store_ctx(p),
                },
            )
        receipts: list[tuple[int, str, list[tuple[_Product, int]]]] = []
        for t in p.store_visits:
            self.receipt_seq[store_id] += self._ri(1, 30)
            receipt = f"{store_id}-{self.receipt_seq[store_id]}"
            n_lines = rng.choices((1, 2, 3, 4), cum_weights=(45, 75, 92, 100))[0]
            lines = list(
                dict.fromkeys(
                    self._pick(rng.choice(p.fav_categories) if rng.random() < 0.5 else None)
                    for _ in range(n_lines)
                ).keys()
            )
            qty_lines = [(prod, 1 if rng.random() < 0.85 else 2) for prod in lines]
            receipts.append((t, receipt, qty_lines))
            self._store_sale(p, t, receipt, qty_lines, cur, typed_phone, "Order Completed", None)
            if rng.random() < 0.05:
                rt = t + self._ri(1, 14) * DAY + rng.randrange(4 * HOUR)
                if rt < HORIZON:
                    self.receipt_seq[store_id] += self._ri(1, 30)
                    refund_receipt = f"{store_id}-{self.receipt_seq[store_id]}"
                    self._store_sale(
                        p,
                        rt,
                        refund_receipt,
                        qty_lines[:1],
                        cur,
                        typed_phone,
                        "Order Refunded",
                        receipt,
                    )

    def _store_ctx(self, p: _Person, traits: dict | None = None) -> dict:
        assert p.store is not None
        store_id, _, country, city_index = p.store
        c = _COUNTRY[country]
        index = [s[0] for s in _STORES].index(store_id)
        ctx = {
            "library": dict(_SERVER_LIB),
            "locale": c.locale,
            "timezone": c.cities[city_index][2],
            "ip": f"10.20.{index}.{11 + index % 3}",
            "userAgent": _SERVER_UA,
        }
        if traits:
            ctx["traits"] = traits
        return ctx

    def _store_sale(
        self,
        p: _Person,
        t: int,
        receipt: str,
        lines: list[tuple[_Product, int]],
        cur: str,
        typed_phone: str,
        event: str,
        original: str | None,
    ) -> None:
        rng = self.rng
        assert p.store is not None
        store_id, store_name, country, _ = p.store
        vat = _COUNTRY[country].vat
        revenue = round(sum(prod.price[cur] * qty for prod, qty in lines), 2)
        if country == "US":
            tax = round(revenue * vat, 2)
            total = round(revenue + tax, 2)
        else:
            tax = round(revenue - revenue / (1 + vat), 2)
            total = revenue
        payment = rng.choice(("card", "card", "card", "cash", "contactless"))
        till = f"{store_id}-T{self._ri(1, 4)}"
        card = p.loyalty_card if p.pos_ident == "card" else ""
        phone = typed_phone if p.pos_ident == "phone" else ""
        if t >= POS_GO_LIVE:
            products = self._order_lines(lines, cur)
            props = {
                "order_id": receipt,
                "affiliation": store_name,
                "store_id": store_id,
                "till_id": till,
                "total": total,
                "revenue": revenue,
                "tax": tax,
                "currency": cur,
                "payment_method": payment,
                "products": products,
            }
            if original:  # Order Refunded: order_id is the sale being refunded
                props["order_id"] = original
                props["refund_receipt_id"] = receipt
                props["reason"] = rng.choice(_RETURN_REASONS)
                del props["payment_method"]
            msg: dict = {"type": "track", "event": event}
            if card:
                msg["userId"] = card
                ctx = self._store_ctx(p, {"loyaltyCard": card})
            else:
                anon = f"pos-{receipt}"
                p.pos_anon_ids.append(anon)
                msg["anonymousId"] = anon
                ctx = self._store_ctx(p, {"phone": phone})
            msg["properties"] = props
            msg["context"] = ctx
            self._emit("pos", t, msg)
            return
        # One row per receipt, so an events import (one track a row) gives one event a sale.
        self.pos_rows.append(
            (
                t,
                len(self.pos_rows),
                {
                    "order_id": original or receipt,
                    "receipt_id": receipt,
                    "event": event,
                    "timestamp": self._iso(t),
                    "store_id": store_id,
                    "store_name": store_name,
                    "till_id": till,
                    "country": country,
                    "currency": cur,
                    "loyalty_card": card,
                    "anonymous_id": "" if card else f"pos-{receipt}",
                    "customer_phone": phone,
                    "item_count": str(sum(qty for _, qty in lines)),
                    "product_ids": "|".join(prod.product_id for prod, _ in lines),
                    "skus": "|".join(prod.sku for prod, _ in lines),
                    "quantities": "|".join(str(qty) for _, qty in lines),
                    "revenue": f"{revenue:.2f}",
                    "tax": f"{tax:.2f}",
                    "total": f"{total:.2f}",
                    "cost": f"{sum(prod.cost[cur] * qty for prod, qty in lines):.2f}",
                    "payment_method": payment if event == "Order Completed" else "",
                    "reason": rng.choice(_RETURN_REASONS) if original else "",
                },
            )
        )
        if not card:
            p.pos_anon_ids.append(f"pos-{receipt}")

    def _store_emails(self, p: _Person) -> None:
        if p.kind == "store" and p.esp_id:
            self._campaign_emails(p)

    # ---------------------------------------------------------------- CRM

    def _crm(self, people: list[_Person]) -> list[dict]:
        rng = self.rng
        rows: list[dict] = []
        for p in people:
            if p.kind == "anonymous":
                continue
            chance = {
                "online": 0.55 + 0.25 * bool(p.orders),
                "store": 1.0,
                "crm_only": 1.0,
                "subscriber": 0.25,
            }[p.kind]
            if p.store is not None:
                chance = 1.0
            if rng.random() >= chance:
                continue
            copies = 2 if rng.random() < 0.05 else 1
            for copy in range(copies):
                row, variants = self._crm_row(p, copy)
                p.crm_records.append({"crm_id": row["crm_id"], "variants": variants})
                rows.append(row)
            if copies == 2:
                p.flags["crm_duplicate"] = True
        rows.sort(key=lambda r: r["crm_id"])
        return rows

    def _crm_row(self, p: _Person, copy: int) -> tuple[dict, list[str]]:
        rng = self.rng
        crm_id = "0035g00000" + "".join(rng.choices(_ALNUM, k=8))
        while crm_id in self.used_ids:
            crm_id = "0035g00000" + "".join(rng.choices(_ALNUM, k=8))
        self.used_ids.add(crm_id)
        if p.kind == "crm_only":
            created = -self._ri(30, 1500) * DAY
            source = rng.choice(("event", "import", "store", "partner"))
        elif p.kind == "store":
            created, source = p.store_visits[0], "store"
        elif p.kind == "subscriber":
            created, source = p.signup_at, "newsletter"
        else:
            created, source = min(p.signup_at, p.card_issued_at), "webshop"
            if p.signup_at >= HORIZON:
                created = p.card_issued_at
        if created >= HORIZON:
            created = self._ri(1, WINDOW_DAYS - 1) * DAY
        row = {
            "crm_id": crm_id,
            "customer_number": (p.user_id or "") if copy == 0 and rng.random() < 0.55 else "",
            "loyalty_card": p.loyalty_card or "",
            "first_name": p.first,
            "last_name": p.last,
            "email": p.email_at(created) if p.kind != "store" or rng.random() < 0.7 else "",
            "phone": "",
            "street": p.address["street"],
            "postal_code": p.address["postalCode"],
            "city": p.address["city"],
            "country": p.country.code,
            "birth_date": p.birthday if rng.random() < 0.5 else "",
            "language": p.language,
            "marketing_consent": "yes" if p.opt_in and p.unsubscribed_at >= HORIZON else "no",
            "created_at": self._date(created),
            "source": source,
        }
        variants: list[str] = []
        if p.new_email and row["email"] and rng.random() < 0.6:
            row["email"] = p.email  # the CRM never heard about the new address
            if created >= p.email_changed_at:
                variants.append("email_old")
        if _NICKNAMES.get(p.first) and rng.random() < 0.4:
            _v_nickname(row, p, rng)
            variants.append("nickname")
        n_variants = rng.choices((0, 1, 2, 3), cum_weights=(30, 72, 93, 100))[0]
        # Weighted order without replacement: key = u ** (1 / weight), largest first.
        pool = sorted(
            _CRM_VARIANTS, key=lambda name: -(rng.random() ** (1 / _CRM_VARIANTS[name][1]))
        )
        for name in pool:
            if len(variants) >= n_variants:
                break
            if _CRM_VARIANTS[name][0](row, p, rng):
                variants.append(name)
        formats = _phone_formats(p.country.code, p.phone, p.phone_national)
        fmt = rng.choice(sorted(formats))
        if rng.random() < 0.12 and p.pos_ident != "phone":  # the till found them by phone
            fmt = "missing"
        else:
            row["phone"] = formats[fmt]
        variants.append(f"phone:{fmt}")
        return row, variants

    # ---------------------------------------------------------------- output

    def build(self) -> DemoData:
        people = self._people()
        for p in people:
            self._plan_store(p)
        for p in people:
            if p.devices:
                self._simulate_online(p)
            self._simulate_store(p)
            self._store_emails(p)
            self._refunds_and_support(p)
        crm_rows = self._crm(people)
        messages: dict[str, list[dict]] = {}
        for source, items in self.out.items():
            items.sort(key=lambda item: (item[0], item[1]))
            for t, _, msg in items:
                msg["timestamp"] = self._iso(t)
            messages[source] = [m for _, _, m in items]
        self.pos_rows.sort(key=lambda item: (item[0], item[1]))
        return DemoData(
            sources=list(SOURCES),
            messages=messages,
            crm_rows=crm_rows,
            pos_rows=[row for _, _, row in self.pos_rows],
            people=[self._truth(p) for p in people],
            catalog=self._catalog_rows(),
        )

    def _truth(self, p: _Person) -> dict:
        emails = [p.email] + ([p.new_email] if p.new_email else [])
        identified = p.user_id is not None and p.signup_at < HORIZON
        return {
            "person_id": p.pid,
            "kind": p.kind,
            "identified_online": identified,
            "country": p.country.code,
            "language": p.language,
            "locale": p.locale,
            "first_name": p.first,
            "last_name": p.last,
            "emails": emails,
            "phone": p.phone,
            "phone_national": p.phone_national,
            "birthday": p.birthday,
            "address": dict(p.address),
            "user_id": p.user_id,
            "anonymous_ids": [d.anon_id for d in p.devices if d.used],
            "esp_subscriber_id": p.esp_id,
            "support_requester_id": p.support_id,
            "support_synced": p.support_synced,
            "loyalty_card": p.loyalty_card,
            "pos_ident": p.pos_ident,
            "store_id": p.store[0] if p.store else None,
            "pos_anonymous_ids": list(p.pos_anon_ids),
            "order_ids": [o["order_id"] for o in p.orders],
            "crm_records": [dict(r) for r in p.crm_records],
            "flags": dict(p.flags),
        }

    def _catalog_rows(self) -> list[dict]:
        return [
            {
                "product_id": pr.product_id,
                "sku": pr.sku,
                "name": pr.name,
                "category": pr.category,
                "brand": pr.brand,
                "variant": pr.variant,
                **{f"price_{c.lower()}": pr.price[c] for c in _FX},
                **{f"cost_{c.lower()}": pr.cost[c] for c in _FX},
                "url": f"{SHOP_URL}/en/p/{pr.slug}-{pr.product_id}",
            }
            for pr in self.products
        ]


class _Visit:
    """One visit on one device: who is logged in, and the page being looked at."""

    __slots__ = ("w", "p", "dev", "uid", "referrer", "campaign", "page", "dev_source")

    def __init__(
        self,
        w: _World,
        p: _Person,
        dev: _Device,
        uid: str | None,
        referrer: str,
        campaign: dict | None,
    ) -> None:
        self.w, self.p, self.dev, self.uid = w, p, dev, uid
        self.referrer, self.campaign = referrer, campaign
        self.page: dict | None = None
        self.dev_source = "web-shop" if dev.kind == "web" else "mobile-app"

    def _msg(self, kind: str) -> dict:
        msg: dict = {"type": kind}
        if self.uid is not None:
            msg["userId"] = self.uid
        msg["anonymousId"] = self.dev.anon_id
        # Fresh nested dicts per message, so no two messages share a mutable object.
        ctx = {k: dict(v) if type(v) is dict else v for k, v in self.dev.ctx.items()}
        if self.page is not None:
            ctx["page"] = dict(self.page)
        if self.campaign is not None:
            ctx["campaign"] = dict(self.campaign)
        msg["context"] = ctx
        return msg

    def view(
        self,
        t: int,
        name: str,
        path: str,
        title: str,
        search: str = "",
        product: _Product | None = None,
    ) -> int:
        """A page (web) or screen (app) view; returns the time after it."""
        if self.page is not None:
            self.campaign = None  # utm parameters only live on the landing URL
        if self.dev.kind == "web":
            url = SHOP_URL + path + search
            self.page = {
                "path": path,
                "referrer": self.referrer,
                "search": search,
                "title": title,
                "url": url,
            }
            msg = self._msg("page")
            msg["name"] = name
            msg["properties"] = dict(self.page)
            self.referrer = url
        else:
            self.page = None
            msg = self._msg("screen")
            msg["name"] = _SCREENS.get(name, name)
            props: dict = {}
            if product is not None:
                props = {"product_id": product.product_id, "name": product.name}
            msg["properties"] = props
        self.dev.used |= self.w._emit(self.dev_source, t, msg)
        return t + self.w._ri(1, 4) * 1000

    def track(self, t: int, event: str, props: dict) -> bool:
        msg = self._msg("track")
        msg["event"] = event
        msg["properties"] = props
        sent = self.w._emit(self.dev_source, t, msg)
        self.dev.used |= sent
        return sent

    def identify(self, t: int, traits: dict, *, with_user: bool) -> None:
        if with_user:
            self.uid = self.p.user_id
            self.dev.logged_in = self.p.user_id
        msg = self._msg("identify")
        msg["traits"] = traits
        self.dev.used |= self.w._emit(self.dev_source, t, msg)


_SCREENS = {
    "Home": "Home",
    "Category": "Product List",
    "Product": "Product Detail",
    "Search": "Search Results",
    "Cart": "Cart",
    "Checkout": "Checkout",
    "Order Confirmation": "Order Confirmation",
    "Login": "Login",
    "Sign Up": "Sign Up",
}


# ------------------------------------------------------------------ CRM spelling variants


def _v_upper(row: dict, p: _Person, rng: random.Random) -> bool:
    row["first_name"], row["last_name"] = row["first_name"].upper(), row["last_name"].upper()
    return True


def _v_lower(row: dict, p: _Person, rng: random.Random) -> bool:
    row["first_name"], row["last_name"] = row["first_name"].lower(), row["last_name"].lower()
    return True


def _v_no_accents(row: dict, p: _Person, rng: random.Random) -> bool:
    before = (row["first_name"], row["last_name"], row["city"], row["street"])
    for key in ("first_name", "last_name", "city", "street"):
        row[key] = _fold(row[key])
    return before != (row["first_name"], row["last_name"], row["city"], row["street"])


def _v_de_translit(row: dict, p: _Person, rng: random.Random) -> bool:
    before = (row["first_name"], row["last_name"])
    row["first_name"] = row["first_name"].translate(_DE_TRANSLIT)
    row["last_name"] = row["last_name"].translate(_DE_TRANSLIT)
    return before != (row["first_name"], row["last_name"])


def _v_nickname(row: dict, p: _Person, rng: random.Random) -> bool:
    entry = _NICKNAMES.get(p.first)
    if entry is None or row["first_name"] != p.first:
        return False
    row["first_name"] = rng.choice(entry[1])
    return True


def _v_swapped(row: dict, p: _Person, rng: random.Random) -> bool:
    row["first_name"], row["last_name"] = row["last_name"], row["first_name"]
    return True


def _v_initial(row: dict, p: _Person, rng: random.Random) -> bool:
    if len(row["first_name"]) < 3:
        return False
    row["first_name"] = row["first_name"][0] + "."
    return True


def _v_first_surname(row: dict, p: _Person, rng: random.Random) -> bool:
    parts = row["last_name"].split(" ")
    if p.country.code != "ES" or len(parts) != 2:
        return False
    row["last_name"] = parts[0]
    return True


def _v_typo(row: dict, p: _Person, rng: random.Random) -> bool:
    name = row["last_name"]
    if len(name) < 5:
        return False
    i = rng.randrange(1, len(name) - 2)
    if name[i] == name[i + 1]:
        row["last_name"] = name[:i] + name[i + 1 :]  # "Hubbard" -> "Hubard"
    else:
        row["last_name"] = name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    return row["last_name"] != name


def _v_whitespace(row: dict, p: _Person, rng: random.Random) -> bool:
    row["first_name"] = f" {row['first_name']}"
    row["last_name"] = f"{row['last_name']}  "
    return True


def _v_email_case(row: dict, p: _Person, rng: random.Random) -> bool:
    if not row["email"]:
        return False
    local, domain = row["email"].split("@")
    parts = [part.capitalize() for part in local.split(".")]
    row["email"] = ".".join(parts) + "@" + domain.capitalize()
    if row["email"] == row["email"].lower():
        row["email"] = row["email"].upper()
    return True


def _v_email_dots(row: dict, p: _Person, rng: random.Random) -> bool:
    local, _, domain = row["email"].partition("@")
    if "." not in local:
        return False
    row["email"] = local.replace(".", "") + "@" + domain
    return True


def _v_email_plus(row: dict, p: _Person, rng: random.Random) -> bool:
    if not row["email"]:
        return False
    local, domain = row["email"].split("@")
    row["email"] = f"{local}+{rng.choice(('shop', 'hp', 'news'))}@{domain}"
    return True


def _v_email_other(row: dict, p: _Person, rng: random.Random) -> bool:
    row["email"] = f"{_slug(p.first)}.{_slug(p.last)}@{rng.choice(('acme', 'globex'))}.example"
    return True


def _v_email_missing(row: dict, p: _Person, rng: random.Random) -> bool:
    if not row["email"]:
        return False
    row["email"] = ""
    return True


# name -> (function, weight). Cosmetic differences are common, destructive ones rare.
_CRM_VARIANTS = {
    "upper_name": (_v_upper, 10),
    "lower_name": (_v_lower, 6),
    "no_accents": (_v_no_accents, 16),
    "de_translit": (_v_de_translit, 10),
    "nickname": (_v_nickname, 8),
    "swapped_names": (_v_swapped, 5),
    "initial": (_v_initial, 3),
    "first_surname_only": (_v_first_surname, 12),
    "typo_last_name": (_v_typo, 4),
    "whitespace": (_v_whitespace, 4),
    "email_case": (_v_email_case, 10),
    "email_no_dots": (_v_email_dots, 8),
    "email_plus_tag": (_v_email_plus, 4),
    "email_other": (_v_email_other, 3),
    "email_missing": (_v_email_missing, 5),
}


# ------------------------------------------------------------------------------ public API


def generate_demo(seed: int = 7, customers: int = 2000, now: datetime | None = None) -> DemoData:
    """Generate the demo business.

    ``customers`` is the number of people in the world (online customers, anonymous
    visitors, newsletter subscribers, store-only and CRM-only customers). Events cover the
    180 days before ``now`` floored to midnight UTC (default: today); the same ``seed``,
    ``customers`` and ``now`` always give identical data.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    now = now.astimezone(UTC)
    base = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=WINDOW_DAYS)
    return _World(seed, customers, base).build()


def write_csv(rows: list[dict], path: Path) -> None:
    """Write rows as UTF-8 CSV; the header is every key, in first-seen order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def main(argv: list[str] | None = None) -> None:
    """Write the demo to a directory: <source>.ndjson, crm.csv, pos.csv, catalog.csv."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=2000)
    args = parser.parse_args(argv)
    data = generate_demo(args.seed, args.customers)
    args.out.mkdir(parents=True, exist_ok=True)
    for source, msgs in data.messages.items():
        (args.out / f"{source}.ndjson").write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in msgs))
    write_csv(data.crm_rows, args.out / "crm.csv")
    write_csv(data.pos_rows, args.out / "pos.csv")
    write_csv(data.catalog, args.out / "catalog.csv")
    (args.out / "people.json").write_bytes(orjson.dumps(data.people, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
