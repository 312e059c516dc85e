"""Common given-name diminutives (Bob → Robert, Paco → Francisco, Kees → Cornelis).

Names whose letters barely overlap (Bob and Robert, Peggy and Margaret) look different
to any string measure; this table lets the name comparison count them as the same first
name. Every name maps to the formal names it may stand for (a name can stand for several:
"bert" for Albert, Herbert, Robert). Keys and values are normalised (lower case, ASCII).
"""

from __future__ import annotations

# formal name: its usual short forms and variants
_GROUPS: dict[str, str] = {
    # English
    "abigail": "abby abbie gail",
    "albert": "al bert bertie",
    "alexander": "alex alec alexis sandy sasha xander",
    "alexandra": "alex alexa sandra sandy lexi sasha",
    "alfred": "al alf alfie fred freddie",
    "andrew": "andy drew",
    "anthony": "tony ant",
    "arthur": "art artie",
    "barbara": "barb barbie babs",
    "benjamin": "ben benny benji",
    "bernard": "bernie barney",
    "catherine": "cathy cat kate katie kathy kitty katherine kathryn",
    "charles": "charlie chuck chas chaz carl",
    "charlotte": "charlie lottie lotte",
    "christopher": "chris kit topher",
    "christine": "chris chrissy tina christina kristina",
    "daniel": "dan danny",
    "david": "dave davy davie",
    "deborah": "deb debbie debra",
    "dorothy": "dot dottie dolly dora",
    "edward": "ed eddie ned ted teddy",
    "edmund": "ed eddie ned",
    "eleanor": "ellie nell nellie elle nora",
    "elizabeth": "liz lizzie beth betty bess bessie eliza libby lisa elsie betsy",
    "emily": "em emmy millie",
    "eugene": "gene",
    "frances": "fran fanny frankie",
    "francis": "frank frankie",
    "frederick": "fred freddie freddy fritz",
    "gerald": "gerry jerry",
    "gregory": "greg",
    "harold": "harry hal",
    "henry": "harry hank hal",
    "herbert": "herb bert",
    "isabel": "isabella bella izzy isa",
    "jacob": "jake jack",
    "james": "jim jimmy jamie jem",
    "jennifer": "jen jenny",
    "john": "jack johnny jon jock",
    "jonathan": "jon jonny",
    "joseph": "joe joey jo",
    "josephine": "jo josie",
    "katherine": "kate katie kathy kay",
    "lawrence": "larry laurie",
    "leonard": "len lenny leo",
    "margaret": "maggie meg peggy madge marge margie greta rita daisy",
    "mary": "molly polly mae mamie",
    "matthew": "matt matty",
    "michael": "mike mick mickey mikey",
    "nathaniel": "nat nate",
    "nicholas": "nick nicky",
    "patricia": "pat patty trish tricia",
    "patrick": "pat paddy",
    "peter": "pete",
    "philip": "phil pip",
    "rebecca": "becky becca",
    "richard": "rick ricky dick rich richie",
    "robert": "bob bobby rob robbie robby bert bertie",
    "ronald": "ron ronnie",
    "samuel": "sam sammy",
    "sarah": "sally sadie sara",
    "stephen": "steve stevie steven",
    "susan": "sue susie suzy",
    "theodore": "ted teddy theo",
    "thomas": "tom tommy",
    "timothy": "tim timmy",
    "victoria": "vicky tori",
    "walter": "walt wally",
    "william": "will bill billy willie willy liam",
    # French, Italian, Spanish, German, Dutch
    "dominique": "dom",
    "francois": "franck",
    "guillaume": "guy",
    "giuseppe": "beppe peppe pino",
    "giovanni": "gianni nino vanni",
    "francesco": "franco cecco",
    "francesca": "franca",
    "salvatore": "toto turi",
    "francisco": "paco pancho curro fran",
    "francisca": "paqui paca",
    "jose": "pepe",
    "josefa": "pepa",
    "manuel": "manolo",
    "enrique": "quique",
    "concepcion": "concha conchi",
    "dolores": "lola",
    "ignacio": "nacho",
    "guadalupe": "lupe",
    "rosario": "charo",
    "antonio": "toni tono",
    "johannes": "hans jan",
    "johann": "hans",
    "wolfgang": "wolf",
    "friedrich": "fritz",
    "matthias": "matze",
    "cornelis": "kees",
    "jacobus": "koos",
    "hendrik": "henk",
    "johanna": "hanna anneke",
    "wilhelmina": "mien",
}


def _build() -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for formal, shorts in _GROUPS.items():
        for short in shorts.split():
            if short != formal:
                out.setdefault(short, set()).add(formal)
    return {k: sorted(v) for k, v in sorted(out.items())}


NICKNAMES: dict[str, list[str]] = _build()


def sql_map() -> str:
    """A DuckDB MAP literal: short form → the formal names it may stand for."""
    items = ", ".join(
        f"'{k}': [{', '.join(repr(v) for v in values)}]" for k, values in NICKNAMES.items()
    )
    return f"MAP {{{items}}}"
