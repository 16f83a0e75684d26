"""Route modules; each declares an ``APIRouter`` named ``router``."""
