-- Cities and states as people type them (issue 20). A place name is compared by its
-- key: lower case, dots and hyphens read as spaces, runs of spaces as one, trimmed
-- ("  NAVI-mumbai " → "navi mumbai"). Names known to mean one place (Bangalore and
-- Bengaluru) are one group in place_names, edited by admins (admin.places.*).

CREATE FUNCTION place_key(name text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN btrim(regexp_replace(lower(translate(name, '.-', '  ')), '\s+', ' ', 'g'));

-- One row per name of a group. The group's canonical name has canonical_key = key; each
-- alias points at it (the foreign key keeps the canonical row while an alias needs it).
-- A name in no group is a place of its own, compared by its key alone. Groups do not
-- chain: a canonical name is never an alias (checked by admin.places.setAlias,
-- api/catalog/places.py, under a lock of the table).
CREATE TABLE place_names (
    kind           text NOT NULL CHECK (kind IN ('city', 'state')),
    name           text NOT NULL CHECK (length(name) BETWEEN 2 AND 100),
    key            text GENERATED ALWAYS AS (place_key(name)) STORED,
    canonical_key  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key),
    CONSTRAINT place_names_canonical_fkey
        FOREIGN KEY (kind, canonical_key) REFERENCES place_names (kind, key),
    CHECK (key <> '')
);
-- A group's names (search expands a name to its group) and admin.places.list.
CREATE INDEX place_names_group_idx ON place_names (kind, canonical_key, key);

-- Listings keep the name as the provider wrote it and its key beside it, so a search
-- compares keys on an index: providers.search (the city filter and the ranks).
ALTER TABLE provider_services
    ADD COLUMN city_key text GENERATED ALWAYS AS (place_key(city)) STORED,
    ADD COLUMN state_key text GENERATED ALWAYS AS (place_key(state)) STORED;
DROP INDEX provider_services_search_idx;  -- on lower(city), lower(state): no query left
CREATE INDEX provider_services_city_idx ON provider_services (service_id, status, city_key);

-- The common alternative names (renamed cities, old spellings, short forms). Only
-- names of one and the same place: Navi Mumbai is not Mumbai, Secunderabad is not
-- Hyderabad, and a name two places share (Aurangabad, Bijapur) is left out.
CREATE TEMPORARY TABLE seed_places (kind text, canonical text, alias text) ON COMMIT DROP;
INSERT INTO seed_places (kind, canonical, alias) VALUES
    ('city', 'Bengaluru', 'Bangalore'),
    ('city', 'Mumbai', 'Bombay'),
    ('city', 'Gurugram', 'Gurgaon'),
    ('city', 'Kolkata', 'Calcutta'),
    ('city', 'Chennai', 'Madras'),
    ('city', 'Pune', 'Poona'),
    ('city', 'Pune', 'Puna'),  -- the original's alias list had it
    ('city', 'Thiruvananthapuram', 'Trivandrum'),
    ('city', 'Kochi', 'Cochin'),
    ('city', 'Vadodara', 'Baroda'),
    ('city', 'Varanasi', 'Benares'),
    ('city', 'Varanasi', 'Banaras'),
    ('city', 'Mysuru', 'Mysore'),
    ('city', 'Mangaluru', 'Mangalore'),
    ('city', 'Puducherry', 'Pondicherry'),
    ('city', 'Puducherry', 'Pondy'),
    ('city', 'Prayagraj', 'Allahabad'),
    -- New Delhi is the capital's central district: customers and providers of the
    -- capital write either, and a home-services search means the same city by both.
    ('city', 'Delhi', 'New Delhi'),
    ('city', 'Belagavi', 'Belgaum'),
    ('city', 'Hubballi', 'Hubli'),
    ('city', 'Kalaburagi', 'Gulbarga'),
    ('city', 'Shivamogga', 'Shimoga'),
    ('city', 'Tumakuru', 'Tumkur'),
    ('city', 'Ballari', 'Bellary'),
    ('city', 'Kozhikode', 'Calicut'),
    ('city', 'Thrissur', 'Trichur'),
    ('city', 'Kannur', 'Cannanore'),
    ('city', 'Kollam', 'Quilon'),
    ('city', 'Alappuzha', 'Alleppey'),
    ('city', 'Tiruchirappalli', 'Trichy'),
    ('city', 'Tiruchirappalli', 'Tiruchi'),
    ('city', 'Thoothukudi', 'Tuticorin'),
    ('city', 'Udhagamandalam', 'Ooty'),
    ('city', 'Udhagamandalam', 'Ootacamund'),
    ('city', 'Coimbatore', 'Kovai'),
    ('city', 'Visakhapatnam', 'Vizag'),
    ('city', 'Visakhapatnam', 'Vishakhapatnam'),
    ('city', 'Vijayawada', 'Bezawada'),
    ('city', 'Guwahati', 'Gauhati'),
    ('city', 'Bhubaneswar', 'Bhubaneshwar'),
    ('city', 'Shimla', 'Simla'),
    ('city', 'Panaji', 'Panjim'),
    ('city', 'Nashik', 'Nasik'),
    ('city', 'Ahmedabad', 'Amdavad'),
    ('state', 'Odisha', 'Orissa'),
    ('state', 'Uttarakhand', 'Uttaranchal'),
    ('state', 'Puducherry', 'Pondicherry'),
    ('state', 'Delhi', 'New Delhi'),
    ('state', 'Delhi', 'NCT of Delhi'),
    ('state', 'Delhi', 'National Capital Territory of Delhi'),
    ('state', 'Tamil Nadu', 'Tamilnadu'),
    ('state', 'Tamil Nadu', 'TN'),
    ('state', 'Jammu and Kashmir', 'Jammu & Kashmir'),
    ('state', 'Jammu and Kashmir', 'J&K'),
    ('state', 'Andaman and Nicobar Islands', 'Andaman & Nicobar Islands'),
    ('state', 'Andaman and Nicobar Islands', 'Andaman and Nicobar'),
    ('state', 'Chhattisgarh', 'Chattisgarh'),
    ('state', 'Uttar Pradesh', 'UP'),
    ('state', 'Madhya Pradesh', 'MP'),
    ('state', 'Himachal Pradesh', 'HP'),
    ('state', 'West Bengal', 'WB');

INSERT INTO place_names (kind, name, canonical_key)
SELECT DISTINCT kind, canonical, place_key(canonical) FROM seed_places;
INSERT INTO place_names (kind, name, canonical_key)
SELECT kind, alias, place_key(canonical) FROM seed_places;
