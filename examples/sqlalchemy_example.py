"""nnn from SQLAlchemy: an ORM model with a bias column, ranked by nnn_score in ORDER BY.

Run with PG* environment variables pointing at a database where you may create tables.
"""
import os

from sqlalchemy import BigInteger, Float, cast, create_engine, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, REAL
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Image(Base):
    __tablename__ = "orm_images"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    emb: Mapped[list[float]] = mapped_column(ARRAY(REAL))
    nnn_bias: Mapped[float | None] = mapped_column(REAL)


class Caption(Base):
    __tablename__ = "orm_captions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    emb: Mapped[list[float]] = mapped_column(ARRAY(REAL))


url = "postgresql+psycopg://{u}@{h}:{p}/{d}".format(
    u=os.environ.get("PGUSER", "postgres"), h=os.environ.get("PGHOST", "localhost"),
    p=os.environ.get("PGPORT", "5432"), d=os.environ.get("PGDATABASE", "postgres"))
engine = create_engine(url)
with engine.begin() as conn:
    conn.execute(text("CREATE EXTENSION IF NOT EXISTS nnn"))
Base.metadata.drop_all(engine)
Base.metadata.create_all(engine)

with Session(engine) as s:
    s.add_all([Image(id=1, emb=[0.0, 1.0, 0.0, 0.0]), Image(id=2, emb=[1.0, 0.0, 0.0, 0.0]), Image(id=3, emb=[0.0, 0.0, 1.0, 0.0])])
    s.add_all([Caption(id=i, emb=e) for i, e in enumerate([[0.0, 0.6, 0.8, 0.0], [0.6, 0.0, 0.8, 0.0], [0.0, 0.0, 1.0, 0.0]])])
    s.commit()
    # the migration step: fill the bias column (k = 2 neighbours)
    s.execute(text("SELECT nnn.build_bias('orm_images', 'emb', 'orm_captions', 'emb', k => 2)"))
    s.commit()

    query = cast([0.0, 0.6, 0.8, 0.0], ARRAY(REAL))
    score = func.nnn_score(Image.emb, query, Image.nnn_bias, 0.75, type_=Float)
    best = s.execute(select(Image.id, score.label("score")).order_by(score.desc()).limit(2)).all()
    print("orm:", [(i, round(sc, 4)) for i, sc in best])

Base.metadata.drop_all(engine)
