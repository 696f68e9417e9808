#!/bin/sh
echo "seeded by a MIME part" > /run/mime-marker
