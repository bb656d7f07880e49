"""`synthetic`: the embedded default dataset, generated deterministically at any size.

A catalogue of fictional movies with genres, directors and stars, a Zipf-like popularity, and
seeker/recommender dialogues in which the seeker's taste (a genre, named in the text and implied by the
movies they mention) decides what the recommender suggests. Preferences are thus recoverable from the
text and from the mentioned movies, so a learning model beats `popularity`, while popular movies still
dominate the labels, so the long-tail metrics have something to show.
"""
from __future__ import annotations

import random
from pathlib import Path

from harness.api import hookimpl
from harness.data import (
    MOVIE_PLACEHOLDER,
    RECOMMENDER,
    SEEKER,
    Catalogue,
    Dataset,
    Dialogue,
    KnowledgeGraph,
    Split,
    Turn,
)

GENRES = ("action", "comedy", "drama", "horror", "romance", "science fiction", "thriller", "animation",
          "documentary", "western", "musical", "fantasy")
ADJECTIVES = ("Crimson", "Silent", "Last", "Hidden", "Broken", "Golden", "Midnight", "Frozen", "Electric", "Lost",
              "Wild", "Quiet", "Burning", "Hollow", "Distant", "Velvet")
NOUNS = ("Harbor", "Kingdom", "Promise", "Signal", "Garden", "River", "Machine", "Summer", "Empire", "Mirror",
         "Horizon", "Station", "Letter", "Orchard", "Comet", "Canyon")
FIRST = ("Ada", "Ben", "Cleo", "Dev", "Elena", "Farid", "Greta", "Hugo", "Iris", "Jonas", "Kira", "Luca", "Mina",
         "Noor", "Omar", "Pia")
LAST = ("Alvarez", "Brandt", "Chen", "Duarte", "Eriksen", "Fontaine", "Gupta", "Haddad", "Ivanova", "Jensen",
        "Kowalski", "Laurent", "Moreau", "Nakamura", "Okafor", "Petrov")

OPENERS = ("Hi! I'm in the mood for a {genre} movie tonight.", "Hello, can you suggest a good {genre} film?",
           "Hey, I love {genre} movies. Any ideas?", "Hi there. I want to watch something {genre}.")
LIKED = ("I really enjoyed {title}.", "My favourite is {title}.", "I loved {title} last year.")
SUGGEST = ("You might like {title}.", "Have you seen {title}? It is great.", "I would recommend {title}.",
           "How about {title}?")
REPEAT = ("If you liked {title}, watch it again, honestly.", "{title} is still the best choice for you.")
SEEKER_REPLIES = ("I have not seen that one. Anything else?", "Sounds good, what else do you have?",
                  "I saw it already. Another one?", "Nice! One more please.")
CLOSERS = ("Thanks, that helps a lot!", "Great, I will watch it. Bye!")


def build_synthetic(
    data_dir: Path | None = None,
    num_items: int = 300,
    train_dialogues: int = 600,
    valid_dialogues: int = 100,
    test_dialogues: int = 100,
    zipf_exponent: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """Generate the dataset; the same parameters always give the same dataset (no files are read)."""
    rng = random.Random(seed)
    people = sorted({f"{first} {last}" for first in FIRST for last in LAST})
    titles, genres_of, director_of, stars_of = [], [], [], []
    used_titles: set[str] = set()
    for index in range(num_items):
        title = f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} ({rng.randint(1950, 2024)})"
        while title in used_titles:
            title = f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} ({rng.randint(1950, 2024)})"
        used_titles.add(title)
        titles.append(title)
        genres_of.append(tuple(sorted(rng.sample(range(len(GENRES)), rng.choice((1, 1, 2))))))
        director_of.append(rng.randrange(len(people)))
        stars_of.append(tuple(rng.sample(range(len(people)), 2)))
    # Zipf-like popularity over a random order of the catalogue.
    order = list(range(num_items))
    rng.shuffle(order)
    weight = [0.0] * num_items
    for rank, item in enumerate(order, start=1):
        weight[item] = 1.0 / rank**zipf_exponent
    by_genre = [[i for i in range(num_items) if g in genres_of[i]] for g in range(len(GENRES))]

    def pick(genre: int, exclude: set[int]) -> int:
        candidates = [i for i in by_genre[genre] if i not in exclude] or [i for i in range(num_items) if i not in exclude]
        return rng.choices(candidates, weights=[weight[i] for i in candidates])[0]

    genre_entity = [num_items + g for g in range(len(GENRES))]

    def movie_turn(role: str, template: str, item: int) -> Turn:
        return Turn(role, template.format(title=titles[item]), (item,), (item,),
                    template.format(title=MOVIE_PLACEHOLDER))

    def dialogue(dialogue_id: str) -> Dialogue:
        genre = rng.randrange(len(GENRES))
        mentioned: set[int] = set()
        opener = rng.choice(OPENERS).format(genre=GENRES[genre])
        turns = [Turn(SEEKER, opener, (), (genre_entity[genre],), opener)]
        if rng.random() < 0.6:
            liked = pick(genre, mentioned)
            mentioned.add(liked)
            ask = "Sure! Tell me a movie you liked."
            turns.append(Turn(RECOMMENDER, ask, (), (), ask))
            turns.append(movie_turn(SEEKER, rng.choice(LIKED), liked))
        for _ in range(rng.randint(1, 3)):
            if mentioned and rng.random() < 0.15:
                item = rng.choice(sorted(mentioned))
                turns.append(movie_turn(RECOMMENDER, rng.choice(REPEAT), item))
            else:
                item = pick(genre, mentioned)
                mentioned.add(item)
                turns.append(movie_turn(RECOMMENDER, rng.choice(SUGGEST), item))
            reply = rng.choice(SEEKER_REPLIES)
            turns.append(Turn(SEEKER, reply, (), (), reply))
        closer = rng.choice(CLOSERS)
        turns.append(Turn(RECOMMENDER, "Enjoy the movie!", (), (), "Enjoy the movie!"))
        turns.append(Turn(SEEKER, closer, (), (), closer))
        return Dialogue(dialogue_id, turns)

    splits = {}
    for name, count in (("train", train_dialogues), ("valid", valid_dialogues), ("test", test_dialogues)):
        splits[name] = Split(name, [dialogue(f"{name}-{i}") for i in range(count)])

    heads, relations, tails = [], [], []
    person_entity = num_items + len(GENRES)
    for item in range(num_items):
        for relation, values in ((0, [genre_entity[g] for g in genres_of[item]]),
                                 (1, [person_entity + director_of[item]]),
                                 (2, [person_entity + p for p in stars_of[item]])):
            for value in values:
                heads.append(item)
                relations.append(relation)
                tails.append(value)
    num_entities = num_items + len(GENRES) + len(people)
    for entity in range(num_entities):
        heads.append(entity)
        relations.append(3)
        tails.append(entity)
    kg = KnowledgeGraph(
        num_entities=num_entities,
        relation_names=["genre", "director", "star", "self_loop"],
        heads=heads,
        relations=relations,
        tails=tails,
        item_entities=list(range(num_items)),
        entity_names=titles + list(GENRES) + people,
        self_loop_relation=3,
    )
    catalogue = Catalogue(
        ids=tuple(range(1, num_items + 1)),
        titles=tuple(titles),
        metadata=tuple({"genre": [GENRES[g] for g in genres_of[i]], "director": [people[director_of[i]]],
                        "star": [people[p] for p in stars_of[i]]} for i in range(num_items)),
    )
    dataset = Dataset("synthetic", catalogue, splits, kg, dedup_turn_labels=True,
                      info={"generator": "plugins.synthetic", "seed": seed, "synthetic": True})
    dataset.build_samples()
    return dataset


@hookimpl
def crs_bench_register_datasets(registry) -> None:
    registry.add("synthetic", build_synthetic,
                 "Embedded fictional movie dialogues with recoverable tastes and Zipf popularity (no files).",
                 version="1")
