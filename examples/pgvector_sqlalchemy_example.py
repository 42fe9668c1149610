"""nnn with pgvector from SQLAlchemy: an ORM model whose augmented column [embedding, bias]
(made by nnn.create_index) is ranked with pgvector-python's max_inner_product, filtered in
the same query. The query side [q, -alpha] is built in Python, so the statement is pgvector's own.
Run with PG* environment variables pointing at a database where you may create tables.
"""
import os

from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, Computed, Text, create_engine, select, text
from sqlalchemy.dialects.postgresql import REAL
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

ALPHA = 0.75


class Base(DeclarativeBase):
    pass


class Image(Base):
    __tablename__ = "orm_pv_images"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    emb: Mapped[list[float]] = mapped_column(Vector(4))
    shop: Mapped[str] = mapped_column(Text)
    # written by nnn (its triggers and the generated column): read-only for the ORM
    nnn_bias: Mapped[float | None] = mapped_column(REAL, Computed("NULL"))
    nnn_augmented = mapped_column(Vector(5), Computed("NULL"))


url = "postgresql+psycopg://{u}@{h}:{p}/{d}".format(
    u=os.environ.get("PGUSER", "postgres"), h=os.environ.get("PGHOST", "localhost"),
    p=os.environ.get("PGPORT", "5432"), d=os.environ.get("PGDATABASE", "postgres"))
engine = create_engine(url)
with engine.begin() as conn:  # the migration: tables, then nnn.create_index
    conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    conn.execute(text("CREATE EXTENSION IF NOT EXISTS nnn"))
    conn.execute(text("DROP TABLE IF EXISTS orm_pv_images, orm_pv_captions CASCADE"))
    conn.execute(text("CREATE TABLE orm_pv_images (id bigint PRIMARY KEY, emb vector(4), shop text)"))
    conn.execute(text("CREATE TABLE orm_pv_captions (emb vector(4))"))
    conn.execute(text("INSERT INTO orm_pv_captions VALUES ('[0,0.6,0.8,0]'), ('[0.6,0,0.8,0]'), ('[0,0,1,0]')"))
    conn.execute(text("INSERT INTO orm_pv_images VALUES (2, '[1,0,0,0]', 'b')"))
    conn.execute(text("""SELECT nnn.create_index('orm_pv', 'orm_pv_images', 'id', 'emb', 'orm_pv_captions', 'emb',
                                                k => 2, augmented => 'vector', augmented_index => 'hnsw')"""))

with Session(engine) as s:
    # rows added through the ORM get their bias and augmented vector in the same statement
    s.add_all([Image(id=1, emb=[0, 1, 0, 0], shop="a"), Image(id=3, emb=[0, 0, 1, 0], shop="a"),
               Image(id=4, emb=[0, 0.6, 0.8, 0], shop="b")])
    s.commit()

    q = [0.0, 0.6, 0.8, 0.0]
    distance = Image.nnn_augmented.max_inner_product(q + [-ALPHA])  # -(q.r - alpha*bias)
    stmt = select(Image.id, (-distance).label("score")).where(Image.shop == "a").order_by(distance).limit(2)
    print("orm shop a:", [(i, round(sc, 4)) for i, sc in s.execute(stmt).all()])

with engine.begin() as conn:
    conn.execute(text("SELECT nnn.drop_index('orm_pv')"))
    conn.execute(text("DROP TABLE orm_pv_images, orm_pv_captions"))
