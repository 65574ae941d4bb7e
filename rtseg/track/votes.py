"""What a track shows: the class voted by its recent detections, and a score of its own.

A detector's class for one object flickers (car / truck, person / other) from frame to
frame; a track that took each detection's class as its own would flicker with it. Each
detection a track takes votes for its class with its score, older votes fading by half
every ``half_life`` detections; the track shows the class with the most votes (a tie
keeps the class it shows) and, as its score, the same fading mean of its detections'
scores, so a track continued by a faint detection of a partly hidden object keeps the
confidence it has earned.
"""

from __future__ import annotations

import numpy as np


class ClassVotes:
    """Votes of every track, one row each in the tracker's track order."""

    def __init__(self, half_life: float) -> None:
        self.decay = 0.5 ** (1.0 / half_life)
        self.votes = np.zeros((0, 1))  # (T, classes): fading sum of scores per class
        self.weight = np.zeros(0)  # (T,): fading count of detections

    def __len__(self) -> int:
        return len(self.weight)

    def add(self, class_ids: np.ndarray, scores: np.ndarray) -> None:
        """Append one track per detection, with that detection's vote."""
        self._fit(class_ids)
        rows = np.zeros((len(class_ids), self.votes.shape[1]))
        rows[np.arange(len(class_ids)), class_ids] = scores
        self.votes = np.concatenate([self.votes, rows])
        self.weight = np.concatenate([self.weight, np.ones(len(class_ids))])

    def select(self, keep: np.ndarray) -> None:
        """Keep only the tracks where ``keep`` is true."""
        self.votes, self.weight = self.votes[keep], self.weight[keep]

    def record(self, tracks: np.ndarray, class_ids: np.ndarray, scores: np.ndarray,
               shown: np.ndarray) -> np.ndarray:
        """Add each track's new detection (class, score); return the class each track now shows.

        ``shown``: the class each track showed before, kept unless another now has more votes.
        """
        self._fit(class_ids)
        votes = self.votes[tracks] * self.decay
        votes[np.arange(len(tracks)), class_ids] += scores
        self.votes[tracks] = votes
        self.weight[tracks] = self.weight[tracks] * self.decay + 1.0
        best = votes.argmax(axis=1)
        rows = np.arange(len(tracks))
        return np.where(votes[rows, best] > votes[rows, shown], best, shown)

    def score(self, tracks: np.ndarray) -> np.ndarray:
        """Fading mean of the scores of each track's detections."""
        mean: np.ndarray = self.votes[tracks].sum(axis=1) / self.weight[tracks]
        return mean

    def _fit(self, class_ids: np.ndarray) -> None:
        """Widen the vote table to hold every class id in ``class_ids``."""
        needed = int(class_ids.max()) + 1 if len(class_ids) else 0
        if needed > self.votes.shape[1]:
            self.votes = np.pad(self.votes, ((0, 0), (0, needed - self.votes.shape[1])))
