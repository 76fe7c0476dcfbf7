-- Profiles, addresses and the services catalog.
-- Money is integer paise; times are timestamptz.

-- Profile: an optional email, unique whatever its case (the original's UNIQUE was
-- case-sensitive: "A@x.in" and "a@x.in" were two accounts' emails), and the count of
-- real name changes (at most 2 per account).
ALTER TABLE users
    ADD COLUMN email text,
    ADD COLUMN name_change_count integer NOT NULL DEFAULT 0
        CHECK (name_change_count >= 0);
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email)) WHERE email IS NOT NULL;

-- A user's addresses (at most 3, enforced under the user's row lock). The original
-- validated home|work|other while its CHECK allowed home|office|other, so "work" always
-- failed: office is the one spelling now. The pincode is stored (the original dropped it).
CREATE TABLE addresses (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type          text NOT NULL DEFAULT 'home' CHECK (type IN ('home', 'office', 'other')),
    state         text NOT NULL,
    city          text,
    full_address  text NOT NULL,
    pincode       text CHECK (pincode ~ '^[1-9][0-9]{5}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX addresses_user_id_idx ON addresses (user_id, id);

-- The services master. slug is the stable name apps use (the original's
-- services_master.name); price is what a provider pays to be listed, per billing
-- cycle (the original's base_price, in rupees as NUMERIC; here integer paise).
CREATE TABLE services (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug              text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    name              text NOT NULL,
    category          text NOT NULL,
    is_paid           boolean NOT NULL DEFAULT true,
    price_paise       bigint NOT NULL DEFAULT 0 CHECK (price_paise >= 0),
    currency          char(3) NOT NULL DEFAULT 'INR',
    billing_cycle     text NOT NULL DEFAULT 'yearly' CHECK (billing_cycle IN
                          ('one_time', 'monthly', 'quarterly', 'yearly', 'biennial',
                           'triennial', 'lifetime')),
    billing_interval  smallint NOT NULL DEFAULT 1 CHECK (billing_interval > 0),
    is_active         boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (is_paid = (price_paise > 0))
);
CREATE INDEX services_category_idx ON services (category) WHERE is_active;

-- The sub-services a provider of a service may offer (the original's
-- utils/subServicesValidation.js lists, which left electrician and carpenter empty).
CREATE TABLE sub_services (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_id  bigint NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    slug        text NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    name        text NOT NULL,
    position    integer NOT NULL DEFAULT 0,
    CONSTRAINT sub_services_service_slug_key UNIQUE (service_id, slug)
);

-- One row: the catalog's version, bumped by every admin change in the same
-- transaction. Every instance agrees on it; it is the services.list etag.
CREATE TABLE catalog_version (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    version  bigint NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (true, 1);

INSERT INTO services (slug, name, category, is_paid, price_paise, billing_cycle) VALUES
    ('plumber',            'Plumber',                    'repairs',      true, 9900, 'yearly'),
    ('electrician',        'Electrician',                'repairs',      true, 9900, 'yearly'),
    ('carpenter',          'Carpenter',                  'interiors',    true, 9900, 'yearly'),
    ('painting',           'Painting',                   'finishing',    true, 9900, 'yearly'),
    ('painter',            'Painter',                    'finishing',    true, 9900, 'yearly'),
    ('granite-tiles',      'Granite & Tiles',            'finishing',    true, 9900, 'yearly'),
    ('glass-mirror',       'Glass & Mirror',             'finishing',    true, 9900, 'yearly'),
    ('stainless-steel',    'Stainless Steel',            'finishing',    true, 9900, 'yearly'),
    ('engineer-interior',  'Engineer & Interior Design', 'interiors',    true, 9900, 'yearly'),
    ('interiors-building', 'Interiors',                  'interiors',    true, 9900, 'yearly'),
    ('mason-mastri',       'Mason / Mastri',             'construction', true, 9900, 'yearly'),
    ('contact-building',   'Contract Building',          'construction', true, 9900, 'yearly'),
    ('borewell',           'Borewell',                   'construction', true, 9900, 'yearly'),
    ('labors',             'Labour',                     'construction', false,   0, 'lifetime'),
    ('cleaning',           'Cleaning',                   'cleaning',     true, 9900, 'yearly');

INSERT INTO sub_services (service_id, slug, name, position)
SELECT s.id, v.slug, v.name, v.position
FROM (VALUES
    ('plumber', 'sanitary-pit-construction', 'Sanitary pit construction', 1),
    ('plumber', 'bathroom-fixing-cleaning', 'Bathroom fixing & cleaning', 2),
    ('plumber', 'a-to-z-plumbing-contract', 'A to Z plumbing contract', 3),
    ('plumber', 'tap-installation', 'Tap installation', 4),
    ('plumber', 'shower-installation', 'Shower installation', 5),
    -- electrician and carpenter: no list in the original (registering always failed).
    ('electrician', 'house-wiring', 'House wiring', 1),
    ('electrician', 'switch-socket-repair', 'Switch & socket repair', 2),
    ('electrician', 'fan-light-installation', 'Fan & light installation', 3),
    ('electrician', 'mcb-db-installation', 'MCB & distribution board installation', 4),
    ('electrician', 'a-to-z-electrical-contract', 'A to Z electrical contract', 5),
    ('carpenter', 'furniture-making', 'Furniture making', 1),
    ('carpenter', 'door-window-fitting', 'Door & window fitting', 2),
    ('carpenter', 'modular-kitchen-fitting', 'Modular kitchen fitting', 3),
    ('carpenter', 'wardrobe-fitting', 'Wardrobe fitting', 4),
    ('carpenter', 'furniture-repair', 'Furniture repair', 5),
    ('painting', 'room-painting', 'Room painting', 1),
    ('painting', 'fancy-wall-painting', 'Fancy wall painting', 2),
    ('painting', 'wall-striking', 'Wall striking', 3),
    ('painting', 'full-house-painting', 'Full house painting', 4),
    ('painting', 'wall-panelling', 'Wall panelling', 5),
    -- painter: no list of its own in the original; the painting work a painter does.
    ('painter', 'room-painting', 'Room painting', 1),
    ('painter', 'fancy-wall-painting', 'Fancy wall painting', 2),
    ('painter', 'wall-striking', 'Wall striking', 3),
    ('painter', 'full-house-painting', 'Full house painting', 4),
    ('granite-tiles', 'wall-fitting', 'Wall fitting', 1),
    ('granite-tiles', 'floor-fitting', 'Floor fitting', 2),
    ('granite-tiles', 'parking-tile-fitting', 'Parking tile fitting', 3),
    ('granite-tiles', 'granite-fitting', 'Granite fitting', 4),
    ('granite-tiles', 'broken-tile-fitting', 'Broken tile fitting', 5),
    ('granite-tiles', 'wall-stickering', 'Wall stickering', 6),
    ('granite-tiles', 'a-to-z-tiles-contract', 'A to Z tiles contract', 7),
    ('glass-mirror', 'glass-fitting', 'Glass fitting', 1),
    ('glass-mirror', 'mirror-fitting', 'Mirror fitting', 2),
    ('stainless-steel', 'ss-fitting', 'SS fitting', 1),
    ('stainless-steel', 'ms-fitting', 'MS fitting', 2),
    ('stainless-steel', 'ss-with-glass-fitting', 'SS with glass fitting', 3),
    ('engineer-interior', '2d-planning-floor', '2D floor planning', 1),
    ('engineer-interior', 'structural-planning', 'Structural planning', 2),
    ('engineer-interior', '3d-house-elevation', '3D house elevation', 3),
    ('engineer-interior', 'interior-design', 'Interior design', 4),
    ('engineer-interior', 'shop-interior-planning', 'Shop interior planning', 5),
    ('interiors-building', 'shop-interior', 'Shop interior', 1),
    ('interiors-building', 'kitchen-interior', 'Kitchen interior', 2),
    ('interiors-building', 'room-interior', 'Room interior', 3),
    ('interiors-building', 'top-interior', 'Top (ceiling) interior', 4),
    ('interiors-building', 'a-to-z-interior', 'A to Z interior', 5),
    ('mason-mastri', 'per-sqft-construction', 'Construction per sq. ft.', 1),
    ('contact-building', 'general-contractor', 'General contractor', 1),
    ('contact-building', 'prime-contractor', 'Prime contractor', 2),
    ('contact-building', 'speciality-trade-contractor', 'Speciality trade contractor', 3),
    ('contact-building', 'design-build-contractor', 'Design-build contractor', 4),
    ('contact-building', 'residential-commercial-contractor', 'Residential & commercial contractor', 5),
    ('borewell', 'regular-borewell-drilling', 'Regular borewell drilling', 1),
    ('borewell', 'premium-borewell-drilling', 'Premium borewell drilling', 2),
    -- The original keyed this list "labor" while the service is "labors".
    ('labors', 'per-hour-charges', 'Per hour charges', 1),
    ('cleaning', 'sump-cleaning', 'Sump cleaning', 1),
    ('cleaning', 'tank-cleaning', 'Tank cleaning', 2),
    ('cleaning', 'bathroom-cleaning', 'Bathroom cleaning', 3),
    ('cleaning', 'total-house-cleaning', 'Total house cleaning', 4)
) AS v (service, slug, name, position)
JOIN services s ON s.slug = v.service;
