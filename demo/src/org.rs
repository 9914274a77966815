//! The fictional organisation, `contoso.com`: its domain and tenant, the cities people live
//! in, the departments, the people the incidents need and the names everyone else gets.

pub(crate) const DOMAIN: &str = "CONTOSO";
pub(crate) const TENANT_ID: &str = "4a7c9e21-5b3d-4f8a-9c6e-2d1b0f8e7a63";

/// A geolocation as SigninLogs reports it.
pub(crate) struct Place {
    pub(crate) city: &'static str,
    pub(crate) state: &'static str,
    pub(crate) country: &'static str,
    pub(crate) lat: f64,
    pub(crate) lon: f64,
}

impl Place {
    pub(crate) fn details_json(&self) -> String {
        format!(
            r#"{{"city":"{}","state":"{}","countryOrRegion":"{}","geoCoordinates":{{"latitude":{:.4},"longitude":{:.4}}}}}"#,
            self.city, self.state, self.country, self.lat, self.lon
        )
    }
}

/// Where people live and work.
pub(crate) struct HomeCity {
    pub(crate) place: Place,
    /// Offset from UTC in minutes (summer time; the window is mostly in October).
    pub(crate) tz_min: i64,
    /// First two octets of residential broadband addresses.
    pub(crate) isp: &'static str,
    /// First two octets of mobile carrier addresses.
    pub(crate) mobile: &'static str,
    /// Egress address of the office.
    pub(crate) office_ip: &'static str,
    pub(crate) weight: u32,
}

pub(crate) const fn place(
    city: &'static str,
    state: &'static str,
    country: &'static str,
    lat: f64,
    lon: f64,
) -> Place {
    Place {
        city,
        state,
        country,
        lat,
        lon,
    }
}

pub(crate) static CITIES: [HomeCity; 7] = [
    HomeCity {
        place: place("Seattle", "Washington", "US", 47.6062, -122.3321),
        tz_min: -420,
        isp: "73.53",
        mobile: "172.56",
        office_ip: "64.124.18.5",
        weight: 30,
    },
    HomeCity {
        place: place("New York", "New York", "US", 40.7128, -74.0060),
        tz_min: -240,
        isp: "98.116",
        mobile: "172.58",
        office_ip: "38.104.12.34",
        weight: 18,
    },
    HomeCity {
        place: place("Austin", "Texas", "US", 30.2672, -97.7431),
        tz_min: -300,
        isp: "70.114",
        mobile: "172.59",
        office_ip: "66.90.140.10",
        weight: 10,
    },
    HomeCity {
        place: place("London", "England", "GB", 51.5074, -0.1278),
        tz_min: 60,
        isp: "86.128",
        mobile: "82.132",
        office_ip: "81.145.64.20",
        weight: 14,
    },
    HomeCity {
        place: place("Berlin", "Berlin", "DE", 52.5200, 13.4050),
        tz_min: 120,
        isp: "91.64",
        mobile: "80.187",
        office_ip: "212.227.40.15",
        weight: 10,
    },
    HomeCity {
        place: place("Bengaluru", "Karnataka", "IN", 12.9716, 77.5946),
        tz_min: 330,
        isp: "106.51",
        mobile: "157.48",
        office_ip: "49.207.48.5",
        weight: 10,
    },
    HomeCity {
        place: place("Toronto", "Ontario", "CA", 43.6532, -79.3832),
        tz_min: -240,
        isp: "174.88",
        mobile: "70.52",
        office_ip: "142.112.30.8",
        weight: 8,
    },
];

pub(crate) const SEATTLE: usize = 0;
pub(crate) const NEW_YORK: usize = 1;
pub(crate) const AUSTIN: usize = 2;
pub(crate) const LONDON: usize = 3;

pub(crate) struct Department {
    pub(crate) name: &'static str,
    pub(crate) titles: &'static [&'static str],
    pub(crate) weight: u32,
}

pub(crate) static DEPARTMENTS: [Department; 10] = [
    Department {
        name: "Engineering",
        titles: &[
            "Software Engineer",
            "Senior Software Engineer",
            "Engineering Manager",
            "QA Engineer",
            "DevOps Engineer",
        ],
        weight: 25,
    },
    Department {
        name: "Sales",
        titles: &[
            "Account Executive",
            "Sales Manager",
            "Sales Development Representative",
            "Solutions Consultant",
        ],
        weight: 18,
    },
    Department {
        name: "Marketing",
        titles: &[
            "Marketing Specialist",
            "Content Strategist",
            "Marketing Manager",
            "Product Marketing Manager",
        ],
        weight: 9,
    },
    Department {
        name: "Finance",
        titles: &[
            "Financial Analyst",
            "Accountant",
            "Accounts Payable Specialist",
        ],
        weight: 8,
    },
    Department {
        name: "HR",
        titles: &["HR Generalist", "Recruiter", "HR Business Partner"],
        weight: 5,
    },
    Department {
        name: "IT",
        titles: &[
            "Systems Administrator",
            "IT Support Specialist",
            "Network Engineer",
            "Security Analyst",
        ],
        weight: 5,
    },
    Department {
        name: "Legal",
        titles: &["Paralegal", "Corporate Counsel"],
        weight: 3,
    },
    Department {
        name: "Operations",
        titles: &[
            "Operations Analyst",
            "Project Manager",
            "Program Manager",
            "Operations Manager",
        ],
        weight: 10,
    },
    Department {
        name: "Customer Success",
        titles: &[
            "Customer Success Manager",
            "Support Engineer",
            "Support Team Lead",
        ],
        weight: 15,
    },
    Department {
        name: "Executive",
        titles: &["Vice President", "Chief of Staff"],
        weight: 2,
    },
];

pub(crate) struct NamedUser {
    pub(crate) first: &'static str,
    pub(crate) last: &'static str,
    pub(crate) dept: &'static str,
    pub(crate) title: &'static str,
    pub(crate) city: usize,
    pub(crate) wks: usize,
}

/// People the incidents need, always present at the same index.
pub(crate) static NAMED: [NamedUser; 11] = [
    NamedUser {
        first: "Lee",
        last: "Gu",
        dept: "IT",
        title: "Director of IT",
        city: SEATTLE,
        wks: 0,
    },
    NamedUser {
        first: "Isaiah",
        last: "Langer",
        dept: "IT",
        title: "Systems Administrator",
        city: SEATTLE,
        wks: 7,
    },
    NamedUser {
        first: "Megan",
        last: "Bowen",
        dept: "Marketing",
        title: "Marketing Manager",
        city: SEATTLE,
        wks: 1,
    },
    NamedUser {
        first: "Alex",
        last: "Wilber",
        dept: "Sales",
        title: "Account Executive",
        city: SEATTLE,
        wks: 4,
    },
    NamedUser {
        first: "Nestor",
        last: "Wilke",
        dept: "Operations",
        title: "Operations Manager",
        city: NEW_YORK,
        wks: 22,
    },
    NamedUser {
        first: "Joni",
        last: "Sherman",
        dept: "Sales",
        title: "Sales Development Representative",
        city: AUSTIN,
        wks: 30,
    },
    NamedUser {
        first: "Lynne",
        last: "Robbins",
        dept: "HR",
        title: "HR Business Partner",
        city: LONDON,
        wks: 11,
    },
    NamedUser {
        first: "Patti",
        last: "Fernandez",
        dept: "Finance",
        title: "Controller",
        city: SEATTLE,
        wks: 2,
    },
    NamedUser {
        first: "Lidia",
        last: "Holloway",
        dept: "Finance",
        title: "Financial Analyst",
        city: NEW_YORK,
        wks: 13,
    },
    NamedUser {
        first: "Diego",
        last: "Siciliani",
        dept: "Finance",
        title: "Accountant",
        city: AUSTIN,
        wks: 26,
    },
    NamedUser {
        first: "Adele",
        last: "Vance",
        dept: "Executive",
        title: "Chief Executive Officer",
        city: SEATTLE,
        wks: 3,
    },
];

pub(crate) const U_LEE: usize = 0;
pub(crate) const U_MEGAN: usize = 2;
pub(crate) const U_ALEX: usize = 3;
pub(crate) const U_NESTOR: usize = 4;
pub(crate) const U_JONI: usize = 5;
pub(crate) const U_LYNNE: usize = 6;
/// The service account `svc-sqlbackup`, right after the named people.
pub(crate) const U_SVC: usize = NAMED.len();

pub(crate) static FIRST_NAMES: [&str; 64] = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Sandra",
    "Anthony",
    "Ashley",
    "Mark",
    "Emily",
    "Priya",
    "Rahul",
    "Ananya",
    "Arjun",
    "Wei",
    "Mei",
    "Hiroshi",
    "Yuki",
    "Lukas",
    "Sophie",
    "Felix",
    "Hannah",
    "Oliver",
    "Amelia",
    "Harry",
    "Isla",
    "Noah",
    "Chloe",
    "Liam",
    "Emma",
    "Lucas",
    "Olivia",
    "Mateo",
    "Sofia",
    "Omar",
    "Fatima",
    "Kwame",
    "Amara",
    "Ethan",
    "Grace",
    "Ryan",
    "Zoe",
    "Aisha",
    "Tomas",
];

pub(crate) static LAST_NAMES: [&str; 64] = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
    "Patel",
    "Sharma",
    "Iyer",
    "Reddy",
    "Chen",
    "Wang",
    "Tanaka",
    "Sato",
    "Mueller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Becker",
    "Evans",
    "Roberts",
    "Hughes",
    "Edwards",
    "Murphy",
    "Campbell",
    "Stewart",
    "Nguyen",
    "Kim",
    "Park",
    "Singh",
    "Khan",
    "Okafor",
    "Mensah",
    "Rossi",
    "Costa",
    "Silva",
    "Santos",
    "Novak",
    "Larsen",
];
