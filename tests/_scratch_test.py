from peoplehelpers import LOOKALIKES, add_faces, groups, people_of

def test_x(conn):
    ids = add_faces(conn, LOOKALIKES)
    r = conn.execute("SELECT * FROM pgvision.cluster_faces('face2d', 'full', max_distance => 0.3)").fetchone()
    print(r)
    print(groups(conn, ids))
    r = conn.execute("SELECT * FROM pgvision.cluster_faces('face2d', 'incremental', max_distance => 0.3)").fetchone()
    print(r)
    print(groups(conn, ids))
    conn.execute("UPDATE pgvision.faces SET identity_id = NULL, assigned_by = NULL")
    conn.execute("DELETE FROM pgvision.cluster_deferred")
    r = conn.execute("SELECT * FROM pgvision.cluster_faces('face2d', 'incremental', max_distance => 0.3, batch_size => 2)").fetchone()
    print(r)
    print(groups(conn, ids))
    print(conn.execute("SELECT * FROM pgvision.people").fetchall())
    print(conn.execute("SELECT * FROM pgvision.unassigned_faces").fetchall())
    print(conn.execute("SELECT * FROM pgvision.people_audit").fetchall())
