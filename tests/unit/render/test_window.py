"""The live view: one stream as it is, several as a mosaic whose tiles say what each stream is doing."""

from __future__ import annotations

import numpy as np

from rtseg.render.window import compose_mosaic


def test_a_mosaic_holds_every_stream_in_a_grid_and_a_reconnecting_one_shows_no_stale_image():
    red = np.zeros((90, 160, 3), np.uint8)
    red[..., 0] = 200
    green = np.zeros((90, 160, 3), np.uint8)
    green[..., 1] = 200
    mosaic = compose_mosaic([(red, "gate", "25.0 fps"), (green, "yard", "24.8 fps"), (None, "door", "reconnecting...")],
                            tile_width=320)
    assert mosaic.shape == (2 * 180, 2 * 320, 3)  # three tiles: a 2 x 2 grid, tiles keep the 16:9 aspect
    assert mosaic[150, 160, 0] > 150 and mosaic[150, 160, 1] < 50  # first tile: the red stream, below its title band
    assert mosaic[150, 480, 1] > 150 and mosaic[150, 480, 0] < 50  # second tile: the green one
    door = mosaic[180:360, :320]
    assert door.max() > 100 and (door > 0).mean() < 0.2  # status text on black, not a frozen frame
    assert mosaic[180:360, 320:].max() == 0  # the empty fourth cell
