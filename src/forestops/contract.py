"""The data contract: the single source of truth for columns, types, bounds, categories and labels.

Validation (ingestion), model encoding, the inference API schema and the UI forms are all
generated from the tables below, so a change here is a change everywhere at once. Categories are
encoded from this contract, never learned from data, so a category unseen in training can never
crash serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class Description:
    """What a feature or class means, once, in English (the API's schema) and Spanish (the UI)."""

    en: str
    es: str


@dataclass(frozen=True, slots=True)
class NumericFeature:
    """An integer measurement with inclusive physical bounds (outside them is an error, never clipped)."""

    name: str
    course_name: str
    minimum: int
    maximum: int
    unit: str
    default: int


@dataclass(frozen=True, slots=True)
class Category:
    """One accepted value of a categorical feature: its canonical form, aliases and a human label."""

    code: str
    label: str
    aliases: tuple[str, ...] = ()


# Bounds: the data set spans elevations 1859-3858 m and vertical distances -173..601 m. The
# bounds below are physical, not statistical: Colorado lies between 1011 m and 4401 m, so
# 0..5000 m admits every real Colorado site; a vertical offset to water cannot exceed the
# relief of the state; horizontal distances inside the Roosevelt National Forest study areas
# are far below 50 km.
NUMERIC_FEATURES: Final[tuple[NumericFeature, ...]] = (
    NumericFeature("elevation", "Elevation", 0, 5000, "m", 2900),
    NumericFeature("aspect", "Aspect", 0, 360, "degrees azimuth", 130),
    NumericFeature("slope", "Slope", 0, 90, "degrees", 13),
    NumericFeature(
        "horizontal_distance_to_hydrology",
        "Horizontal_Distance_To_Hydrology",
        0,
        50_000,
        "m",
        230,
    ),
    NumericFeature(
        "vertical_distance_to_hydrology",
        "Vertical_Distance_To_Hydrology",
        -3500,
        3500,
        "m",
        30,
    ),
    NumericFeature(
        "horizontal_distance_to_roadways",
        "Horizontal_Distance_To_Roadways",
        0,
        50_000,
        "m",
        2000,
    ),
    NumericFeature("hillshade_9am", "Hillshade_9am", 0, 255, "index", 212),
    NumericFeature(
        "hillshade_noon",
        "Hillshade_Noon",
        0,
        255,
        "index",
        223,
    ),
    NumericFeature("hillshade_3pm", "Hillshade_3pm", 0, 255, "index", 142),
    NumericFeature(
        "horizontal_distance_to_fire_points",
        "Horizontal_Distance_To_Fire_Points",
        0,
        50_000,
        "m",
        1800,
    ),
)

WILDERNESS_AREAS: Final[tuple[Category, ...]] = (
    Category("Rawah", "Rawah Wilderness Area"),
    Category("Neota", "Neota Wilderness Area"),
    Category(
        "Commanche",
        "Comanche Peak Wilderness Area",
        ("Commanche Peak", "Comanche", "Comanche Peak"),
    ),
    Category("Cache", "Cache la Poudre Wilderness Area", ("Cache la Poudre", "Cache La Poudre")),
)

# The 40 ELU (Ecological Landtype Unit) codes of the UCI covtype.info, in UCI order (Soil_Type1..40).
_SOIL_TABLE: Final[tuple[tuple[str, str], ...]] = (
    ("2702", "Cathedral family - Rock outcrop complex, extremely stony"),
    ("2703", "Vanet - Ratake families complex, very stony"),
    ("2704", "Haploborolis - Rock outcrop complex, rubbly"),
    ("2705", "Ratake family - Rock outcrop complex, rubbly"),
    ("2706", "Vanet family - Rock outcrop complex, rubbly"),
    ("2717", "Vanet - Wetmore families - Rock outcrop complex, stony"),
    ("3501", "Gothic family"),
    ("3502", "Supervisor - Limber families complex"),
    ("4201", "Troutville family, very stony"),
    ("4703", "Bullwark - Catamount families - Rock outcrop complex, rubbly"),
    ("4704", "Bullwark - Catamount families - Rock land complex, rubbly"),
    ("4744", "Legault family - Rock land complex, stony"),
    ("4758", "Catamount family - Rock land - Bullwark family complex, rubbly"),
    ("5101", "Pachic Argiborolis - Aquolis complex"),
    ("5151", "Unspecified in the USFS Soil and ELU Survey"),
    ("6101", "Cryaquolis - Cryoborolis complex"),
    ("6102", "Gateview family - Cryaquolis complex"),
    ("6731", "Rogert family, very stony"),
    ("7101", "Typic Cryaquolis - Borohemists complex"),
    ("7102", "Typic Cryaquepts - Typic Cryaquolls complex"),
    ("7103", "Typic Cryaquolls - Leighcan family, till substratum complex"),
    ("7201", "Leighcan family, till substratum, extremely bouldery"),
    ("7202", "Leighcan family, till substratum - Typic Cryaquolls complex"),
    ("7700", "Leighcan family, extremely stony"),
    ("7701", "Leighcan family, warm, extremely stony"),
    ("7702", "Granile - Catamount families complex, very stony"),
    ("7709", "Leighcan family, warm - Rock outcrop complex, extremely stony"),
    ("7710", "Leighcan family - Rock outcrop complex, extremely stony"),
    ("7745", "Como - Legault families complex, extremely stony"),
    ("7746", "Como family - Rock land - Legault family complex, extremely stony"),
    ("7755", "Leighcan - Catamount families complex, extremely stony"),
    ("7756", "Catamount family - Rock outcrop - Leighcan family complex, extremely stony"),
    ("7757", "Leighcan - Catamount families - Rock outcrop complex, extremely stony"),
    ("7790", "Cryorthents - Rock land complex, extremely stony"),
    ("8703", "Cryumbrepts - Rock outcrop - Cryaquepts complex"),
    ("8707", "Bross family - Rock land - Cryumbrepts complex, extremely stony"),
    ("8708", "Rock outcrop - Cryumbrepts - Cryorthents complex, extremely stony"),
    ("8771", "Leighcan - Moran families - Cryaquolls complex, extremely stony"),
    ("8772", "Moran family - Cryorthents - Leighcan family complex, extremely stony"),
    ("8776", "Moran family - Cryorthents - Rock land complex, extremely stony"),
)
SOIL_TYPES: Final[tuple[Category, ...]] = tuple(
    Category(f"C{elu}", label, (elu,)) for elu, label in _SOIL_TABLE
)


@dataclass(frozen=True, slots=True)
class CoverType:
    id: int
    name: str
    name_es: str
    description: Description


COVER_TYPES: Final[tuple[CoverType, ...]] = (
    CoverType(
        0,
        "Spruce/Fir",
        "Picea/Abeto",
        Description(
            "Engelmann spruce and subalpine fir: cold, high, moist slopes.",
            "Pícea de Engelmann y abeto subalpino: laderas frías, altas y húmedas.",
        ),
    ),
    CoverType(
        1,
        "Lodgepole Pine",
        "Pino contorta",
        Description(
            "The most common type: mid elevations, after fire.",
            "El tipo más común: altitudes medias, tras los incendios.",
        ),
    ),
    CoverType(
        2,
        "Ponderosa Pine",
        "Pino ponderosa",
        Description(
            "Warm, dry, low slopes; open stands.", "Laderas bajas, cálidas y secas; masas abiertas."
        ),
    ),
    CoverType(
        3,
        "Cottonwood/Willow",
        "Álamo/Sauce",
        Description(
            "Riparian: along streams at low elevations; rare.",
            "Ribereño: junto a arroyos a poca altitud; poco frecuente.",
        ),
    ),
    CoverType(
        4,
        "Aspen",
        "Álamo temblón",
        Description(
            "Quaking aspen, often where conifers were disturbed.",
            "Álamo temblón, a menudo donde las coníferas sufrieron perturbaciones.",
        ),
    ),
    CoverType(
        5,
        "Douglas-fir",
        "Abeto de Douglas",
        Description(
            "Steep, cooler, north-facing low slopes.",
            "Laderas bajas, empinadas, más frescas y orientadas al norte.",
        ),
    ),
    CoverType(
        6,
        "Krummholz",
        "Krummholz",
        Description(
            "Stunted trees at tree line; the highest sites.",
            "Árboles achaparrados en el límite del bosque; los sitios más altos.",
        ),
    ),
)

CATEGORICAL_FEATURES: Final[MappingProxyType[str, tuple[Category, ...]]] = MappingProxyType(
    {"wilderness_area": WILDERNESS_AREAS, "soil_type": SOIL_TYPES}
)
FEATURE_DESCRIPTIONS: Final[MappingProxyType[str, Description]] = MappingProxyType(
    {
        "elevation": Description("Elevation above sea level", "Altitud sobre el nivel del mar"),
        "aspect": Description(
            "Compass direction the slope faces",
            "Dirección de la brújula hacia la que mira la ladera",
        ),
        "slope": Description("Steepness of the slope", "Inclinación de la ladera"),
        "horizontal_distance_to_hydrology": Description(
            "Horizontal distance to the nearest surface water",
            "Distancia horizontal al agua superficial más cercana",
        ),
        "vertical_distance_to_hydrology": Description(
            "Vertical distance to the nearest surface water (negative: below it)",
            "Distancia vertical al agua superficial más cercana (negativa: por debajo)",
        ),
        "horizontal_distance_to_roadways": Description(
            "Horizontal distance to the nearest road",
            "Distancia horizontal a la carretera más cercana",
        ),
        "hillshade_9am": Description(
            "Hillshade index at 9am on the summer solstice (0 dark, 255 bright)",
            "Índice de sombreado a las 9h en el solsticio de verano (0 oscuro, 255 claro)",
        ),
        "hillshade_noon": Description(
            "Hillshade index at noon on the summer solstice (0 dark, 255 bright)",
            "Índice de sombreado a las 12h en el solsticio de verano (0 oscuro, 255 claro)",
        ),
        "hillshade_3pm": Description(
            "Hillshade index at 3pm on the summer solstice (0 dark, 255 bright)",
            "Índice de sombreado a las 15h en el solsticio de verano (0 oscuro, 255 claro)",
        ),
        "horizontal_distance_to_fire_points": Description(
            "Horizontal distance to the nearest wildfire ignition point",
            "Distancia horizontal al punto de ignición de incendio más cercano",
        ),
        "wilderness_area": Description(
            "One of the four wilderness areas of the Roosevelt National Forest",
            "Una de las cuatro áreas silvestres del Bosque Nacional Roosevelt",
        ),
        "soil_type": Description(
            "Ecological Landtype Unit code of the USFS soil survey",
            "Código de Unidad Ecológica de Terreno del estudio de suelos del USFS",
        ),
    }
)
"""What each feature means: the API's field and /metadata descriptions and the UI's help text."""
NUMERIC_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in NUMERIC_FEATURES)
CATEGORICAL_NAMES: Final[tuple[str, ...]] = tuple(CATEGORICAL_FEATURES)
FEATURE_NAMES: Final[tuple[str, ...]] = NUMERIC_NAMES + CATEGORICAL_NAMES
LABEL: Final = "cover_type"
COLUMNS: Final[tuple[str, ...]] = (*FEATURE_NAMES, LABEL)
"""Canonical columns in the course's order (10 numbers, wilderness area, soil type, cover type)."""

COURSE_NAMES: Final[MappingProxyType[str, str]] = MappingProxyType(
    {
        **{f.course_name: f.name for f in NUMERIC_FEATURES},
        "Wilderness_Area": "wilderness_area",
        "Soil_Type": "soil_type",
        "Cover_Type": LABEL,
    }
)
"""Course CamelCase column name -> canonical snake_case name."""

CLASS_IDS: Final[tuple[int, ...]] = tuple(c.id for c in COVER_TYPES)
CLASS_NAMES: Final[tuple[str, ...]] = tuple(c.name for c in COVER_TYPES)
NUMERIC_BY_NAME: Final[MappingProxyType[str, NumericFeature]] = MappingProxyType(
    {f.name: f for f in NUMERIC_FEATURES}
)


def _alias_index(categories: tuple[Category, ...]) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, category in enumerate(categories):
        for spelling in (category.code, *category.aliases):
            index[spelling.casefold()] = position
    return index


_CATEGORY_INDEX: Final = {name: _alias_index(cats) for name, cats in CATEGORICAL_FEATURES.items()}


def category_code(feature: str, value: object) -> int:
    """Position of `value` in the contract's category list (the model's ordinal code).

    Accepts the canonical spelling and every alias, case-insensitively, with surrounding spaces.
    Raises ValueError naming the accepted values for anything else.
    """
    text = str(value).strip().casefold()
    try:
        return _CATEGORY_INDEX[feature][text]
    except KeyError:
        accepted = ", ".join(c.code for c in CATEGORICAL_FEATURES[feature])
        raise ValueError(f"unknown {feature} {value!r}; accepted: {accepted}") from None


def canonical_category(feature: str, value: object) -> str:
    """Canonical spelling of a category ("Comanche" -> "Commanche", "7745" -> "C7745")."""
    return CATEGORICAL_FEATURES[feature][category_code(feature, value)].code


def parse_int(feature: str, value: object) -> int:
    """Parse a numeric feature strictly: an integer (or integral float) within the physical bounds.

    Booleans, fractions, NaN/Infinity and out-of-range values raise ValueError with a readable reason.
    """
    spec = NUMERIC_BY_NAME[feature]
    if isinstance(value, bool):
        raise ValueError(f"{feature} must be an integer, got a boolean")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise ValueError(f"{feature} must be an integer, got {value!r}") from None
            if not as_float.is_integer():
                raise ValueError(f"{feature} must be an integer, got {value!r}") from None
            number = int(as_float)
    if not spec.minimum <= number <= spec.maximum:
        raise ValueError(f"{feature}={number} outside [{spec.minimum}, {spec.maximum}] {spec.unit}")
    return number


def parse_label(value: object) -> int:
    """Parse a cover type label 0..6 (the course numbering)."""
    text = str(value).strip()
    try:
        label = int(text)
    except ValueError:
        raise ValueError(f"{LABEL} must be an integer 0..6, got {value!r}") from None
    if label not in CLASS_IDS:
        raise ValueError(f"{LABEL}={label} is not a class id 0..6")
    return label


def canonical_column(name: str) -> str:
    """Map a course CamelCase or canonical column name onto the canonical name (unknown: unchanged)."""
    stripped = name.strip().lstrip("\ufeff")
    return COURSE_NAMES.get(stripped, stripped.lower() if stripped.lower() in COLUMNS else stripped)
